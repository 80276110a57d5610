"""Every default of the pipeline, in one place.

Scripts build their command line from `DEFAULTS`: each key becomes a `--flag` (underscores become
dashes), so `python train.py --num-codes 256 --epochs 5` overrides two values and keeps the rest.
The values a run used are written as JSON next to its checkpoints (`hyperparameters.json`), and
`predict.py` / `similarity.py` read them back so they rebuild exactly the same model.
"""
import argparse
import json
import pathlib

DEFAULTS = {
    # --- data -------------------------------------------------------------------------------
    # Root of the OASIS download (holding keras_png_slices_train/validate/test), a folder of
    # NIfTI volumes, or a NIfTI slice layout. When it does not exist, the embedded MNI152 demo
    # dataset is used instead (and the scripts say so).
    "data_dir": "data/keras_png_slices_data",
    "image_size": 128,  # slices are resized to image_size x image_size
    "slices_per_volume": 32,  # central slices cut from each NIfTI volume (fewer if coarser)
    "slice_axis": "axial",  # NIfTI volumes are cut along: axial | coronal | sagittal
    "crop_to_head": True,  # crop each NIfTI volume's slices to its head box (with a margin)
    # > 0: whole volumes. Each NIfTI volume is cut as a stack of slices_per_volume axial slices
    # this many mm apart from the top of the head down, each a square field_of_view mm wide
    # (volumes.cut_stack), so a model of consecutive slices can draw whole brains (64 x 2 mm
    # covers the brain from its top to its base). 0: slices placed by the head's anatomy.
    "slice_spacing": 0.0,
    "field_of_view": 224.0,  # mm, the side of a stack's slices (slice_spacing > 0)
    # Shares of the subjects of a NIfTI folder for train,validate,test: fractions or counts
    # (125,20,20 on 165 subjects gives exactly those counts).
    "split": "0.8,0.1,0.1",
    "num_slice_positions": 32,  # slice-index vocabulary for the conditional prior
    # Augmented copies of each demo training slice (73 slices). 5 makes an epoch 28 VQ-VAE
    # steps: at 20 the demo's VQ-VAE alone took 27 minutes on 2 slow CPU cores (docs/results.md).
    "demo_copies": 5,
    "skip_bad": False,  # skip unreadable files (with a count) instead of stopping
    "seed": 42,
    # Covariates of the subjects (a CSV: subject, age, sex, ...; brainvq/data/covariates.py) and
    # the columns the prior is conditioned on beside the slice position, e.g. "age,sex"
    # (empty: none). Each is dropped for 10% of the training examples (--prior's condition
    # dropout), so any of them can be left out when sampling.
    "covariates": "",
    "condition_on": "",
    # --- VQ-VAE -----------------------------------------------------------------------------
    "num_codes": 512,  # K: codebook size
    "code_dim": 64,  # D: dimension of each code vector
    "num_downsamples": 3,  # 3 -> 8x down: 256x256 -> 32x32 grid, 128x128 -> 16x16 grid
    "channels": 64,  # width of the first encoder level; doubles per level up to 4x
    "num_residual_blocks": 2,
    "attention": False,  # a self-attention block at the grid's resolution in encoder and decoder
    # 2: VQ-VAE-2 (hierarchy.py), a top grid half as wide again above the bottom grid, and a
    # two-level prior (top, then bottom given top); code bits count both grids
    "levels": 1,
    "top_code_dim": 64,  # dimension of the top level's codes (levels 2)
    "commitment_cost": 0.25,  # beta
    "use_ema": True,  # EMA codebook updates (False: codebook loss with gradients)
    "ema_decay": 0.99,
    "dead_code_threshold": 1.0,  # EMA of assignments per batch under which a code restarts
    "ssim_weight": 0.5,  # reconstruction loss = MSE + ssim_weight * (1 - SSIM)
    "ssim_warmup_steps": 500,  # the SSIM weight ramps up from 0 over these training steps
    "ssim_window": "uniform",  # SSIM loss window: uniform (7x7, as reported) | gaussian (11x11)
    "perceptual_weight": 0.0,  # weight of the VGG16 perceptual distance (perceptual.py; 0: off)
    "perceptual_weights": "",  # VGG16 no-top weights .h5 ("": ImageNet, downloaded once)
    "adversarial_weight": 0.0,  # PatchGAN hinge loss, adaptively weighted (adversarial.py; 0: off)
    "adversarial_start": 2000,  # training steps before the adversarial terms switch on
    # --- VQ-VAE training --------------------------------------------------------------------
    "batch_size": 16,
    # 5e-4 after a 200-step linear warm-up: at 1e-3 the 128x128 model collapses to a few codes
    # (at the start without a warm-up, at the warm-up's end with one); docs/results.md
    "learning_rate": 5e-4,
    "warmup_steps": 200,  # VQ-VAE: learning rate rises linearly from 0 over this many steps
    "epochs": 10,
    "steps_per_epoch": 0,  # 0: one pass over the training split
    # --- PixelCNN prior ---------------------------------------------------------------------
    "prior_filters": 96,
    "prior_layers": 6,  # gated layers after the first masked (type A) layer
    "prior_kernel_size": 3,
    "prior_dropout": 0.1,
    "prior_attention_blocks": 2,  # causal self-attention blocks on the gated stacks (0: none)
    "prior_attention_heads": 4,
    "prior_position_embedding": True,  # learned row and column embeddings of grid positions
    "prior_batch_size": 32,
    "prior_learning_rate": 2e-3,
    "prior_weight_decay": 1e-2,  # AdamW decoupled weight decay (0: plain Adam)
    # Polyak averaging: validate, keep and sample with a moving average of the prior's weights
    # with this decay per step (0: the weights as trained).
    "prior_weight_averaging": 0.0,
    "prior_epochs": 10,
    # Volume prior (runs cut as stacks): in training, this share of the codes of the slice below
    # is replaced by random codes, so the prior learns to repair its condition rather than copy
    # it (sampled stacks condition each slice on a sampled one, errors included). 0: clean.
    "volume_condition_noise": 0.25,
    # Code-grid augmentation: each training slice is also encoded this many more times, flipped
    # left-right and/or shifted by up to prior_augment_shift pixels, by the frozen VQ-VAE.
    "prior_augment_copies": 8,
    "prior_augment_shift": 4,
    # ... and, from the second copy on, rotated by up to this many degrees and scaled by up to
    # this fraction about the centre (0: neither). With 8 copies, +-8 degrees and +-8% the
    # Fréchet distance of OASIS-1 samples fell from 5.0x to 2.3x its real floor (docs/results.md).
    "prior_augment_rotation": 8.0,
    "prior_augment_scale": 0.08,
    # Non-leaking augmentation: the prior is told each training grid's augmentation (flip,
    # shift, rotation, scale; 0 for the grids as they are) and samples at 0, so it learns from
    # the augmented grids without drawing shifted, tilted or resized heads (issue 49). Off: the
    # augmented grids are drawn as often as real ones, and so are their poses.
    "prior_augment_condition": True,
    # How many times the training grids as they are enter the pool an epoch draws from, beside
    # the prior_augment_copies augmented ones (1: once, each 1/(1 + copies) of the pool). More
    # teaches the unaugmented grids, which samples are drawn as, more often.
    "prior_original_weight": 1,
    # Start the prior from the weights of this prior checkpoint (a .keras file or a run folder
    # holding prior.keras; the layers it shares with the new prior, by name and shape) instead
    # of at random: fine-tuning a trained prior with a new condition. Empty: from scratch.
    "prior_init": "",
    # Keep the prior's (averaged) weights of every this many epochs as
    # snapshots/prior_epoch_NNN.weights.h5, to choose a checkpoint by sample realism rather
    # than by validation loss (`benchmark.py snapshot`). 0: none.
    "prior_snapshot_every": 0,
    # --- early stopping (both stages keep their best validation epoch) ------------------------
    "patience": 0,  # VQ-VAE: stop after this many epochs without a better val_loss (0: never)
    "prior_patience": 10,  # prior: the same, on the validation bits per code
    # --- sampling ---------------------------------------------------------------------------
    # temperature 0.9 with top-k 32: the lowest Fréchet distance of `benchmark.py realism` on the
    # (axial) OASIS-1 validation subject, for the default prior (docs/results.md)
    "temperature": 0.9,
    "top_k": 32,  # 0: sample from all K codes
    # Classifier-free guidance on a requested slice position (--slice, the slice figure, the
    # slices of a volume): logits u + guidance * (c - u), with and without the slice condition
    # (the prior learns both: its condition is dropped for 10% of the examples). 1: none; above
    # 1 samples land on their position more often, at twice the sampling work. Unconditional
    # samples request no position and are drawn without it.
    "guidance": 1.0,
    # The same over the covariates a sample requests (--age, --sex), at its own scale: logits
    # c + (guidance - 1) (c - u_slice) + (covariate_guidance - 1) (c - u_covariates). 1: none;
    # above 1 samples follow their requested covariates more closely, at one more pass.
    "covariate_guidance": 1.0,
    # Unconditional samples: "positions" draws each sample's slice position from the training
    # slices' positions and samples conditioned on it (p(position) p(codes | position)); "null"
    # samples under the prior's no-condition row, which sees only the 10% of training examples
    # whose condition was dropped. On IXI "positions" brought the Fréchet distance of three
    # training seeds' samples from 6-13x their floor to 1.3-2x (docs/results.md).
    "unconditional": "positions",
    # Guidance on the slice position an unconditional sample drew ("positions" only): the same
    # logits as `guidance`, for samples no one asked a position of. 1: none, each drawn from
    # p(codes | position); above 1 each sample is sharpened toward its drawn position, at twice
    # the sampling work.
    "unconditional_guidance": 1.0,
    # Covariates (age, sex, ...) of a sample or volume that requests none, for a prior trained
    # on them: "null" samples under the prior's no-covariate row; "drawn" gives each sample (each
    # volume: all its slices) one training subject's row, recorded when the prior was trained,
    # and samples conditioned on it without covariate guidance (p(covariates) p(codes | them)).
    # On IXI's validation subjects "drawn" gave unconditional slices more variety (recall, a
    # lower Fréchet distance) and less precision and plausibility (docs/results.md).
    "unconditional_covariates": "null",
    # --- runs -------------------------------------------------------------------------------
    "strategy": "none",  # none | mirrored (all local GPUs) | multiworker (TF_CONFIG)
    "mixed_precision": False,  # float16 on GPU, bfloat16 on CPU; the quantizer stays float32
    # Debugging: Keras `run_eagerly`, the training and validation steps run op by op with no
    # tf.function tracing. Each step is slower, but a run of a few steps starts at once (the
    # tests' tiny runs use it: tracing took most of their time).
    "run_eagerly": False,
    "output_dir": "runs/default",
    "images_dir": "",  # empty: the run's own figures folder, <output_dir>/images
}

# Values that fix the shape of a trained model: a checkpoint is refused when any of them differs.
ARCHITECTURE_KEYS = (
    "image_size", "num_codes", "code_dim", "num_downsamples", "channels", "num_residual_blocks",
    "attention", "adversarial_weight", "levels", "top_code_dim", "num_slice_positions",
    "prior_filters", "prior_layers",
    "prior_kernel_size",
    "prior_attention_blocks", "prior_attention_heads", "prior_position_embedding",
    "condition_on", "prior_augment_condition",
)

# The subset that fixes the VQ-VAE (a prior may be retrained over it with other prior values).
VQVAE_KEYS = ("image_size", "num_codes", "code_dim", "num_downsamples", "channels",
              "num_residual_blocks", "attention", "adversarial_weight", "levels", "top_code_dim")

# How the VQ-VAE was trained (not its shape). A `--stage prior` run over a saved VQ-VAE keeps
# these as the folder recorded them: they describe the VQ-VAE it did not retrain.
VQVAE_TRAINING_KEYS = ("commitment_cost", "use_ema", "ema_decay", "dead_code_threshold",
                       "ssim_weight", "ssim_warmup_steps", "ssim_window", "perceptual_weight",
                       "perceptual_weights", "adversarial_start", "batch_size", "learning_rate",
                       "warmup_steps", "epochs", "steps_per_epoch", "patience")

# Flags that take one of a few words.
CHOICES = {"ssim_window": ("gaussian", "uniform"),
           "slice_axis": ("axial", "coronal", "sagittal"),
           "strategy": ("none", "mirrored", "multiworker"),
           "unconditional": ("positions", "null"),
           "unconditional_covariates": ("null", "drawn")}

# Allowed range of each number: (lowest, highest), None for no bound; a low bound written as
# (value, "exclusive") excludes the value itself.
RANGES = {
    "image_size": (8, None), "slices_per_volume": (1, None), "slice_spacing": (0.0, None),
    "field_of_view": ((0.0, "exclusive"), None), "num_slice_positions": (1, None),
    "demo_copies": (0, None), "seed": (0, 2 ** 31 - 1),
    "num_codes": (2, None), "code_dim": (1, None), "num_downsamples": (1, 8),
    "channels": (1, None), "num_residual_blocks": (0, None), "levels": (1, 2),
    "top_code_dim": (1, None), "commitment_cost": (0.0, None),
    "ema_decay": (0.0, 0.9999), "dead_code_threshold": (0.0, None), "ssim_weight": (0.0, None),
    "perceptual_weight": (0.0, None), "adversarial_weight": (0.0, None),
    "adversarial_start": (0, None),
    "ssim_warmup_steps": (0, None), "batch_size": (1, None),
    "learning_rate": ((0.0, "exclusive"), 1.0), "warmup_steps": (0, None), "epochs": (1, None),
    "steps_per_epoch": (0, None), "prior_filters": (1, None), "prior_layers": (0, None),
    "prior_kernel_size": (1, None), "prior_dropout": (0.0, 0.95),
    "prior_attention_blocks": (0, None), "prior_attention_heads": (1, None),
    "prior_batch_size": (1, None), "prior_learning_rate": ((0.0, "exclusive"), 1.0),
    "prior_weight_decay": (0.0, None), "prior_weight_averaging": (0.0, 0.9999),
    "prior_epochs": (1, None), "volume_condition_noise": (0.0, 1.0),
    "prior_augment_copies": (0, None), "prior_augment_shift": (0, None),
    "prior_augment_rotation": (0.0, 45.0), "prior_augment_scale": (0.0, 0.5),
    "patience": (0, None), "prior_patience": (0, None), "prior_snapshot_every": (0, None),
    "prior_original_weight": (1, None),
    "temperature": ((0.0, "exclusive"), None), "top_k": (0, None), "guidance": (0.0, 10.0),
    "covariate_guidance": (0.0, 10.0), "unconditional_guidance": (0.0, 10.0),
}

# Keys added after runs were first written, with the value that reproduces what such a run did:
# a hyperparameters.json without them was trained that way.
LEGACY_VALUES = {
    "prior_attention_blocks": 0, "prior_attention_heads": 4, "prior_position_embedding": False,
    "prior_weight_decay": 0.0, "prior_weight_averaging": 0.0,
    "prior_augment_copies": 0, "prior_augment_shift": 0,
    "prior_augment_rotation": 0.0, "prior_augment_scale": 0.0,
    "patience": 0, "prior_patience": 0, "warmup_steps": 0,
    "slice_axis": "axial", "crop_to_head": False, "split": "0.8,0.1,0.1", "attention": False,
    "perceptual_weight": 0.0, "perceptual_weights": "", "adversarial_weight": 0.0,
    "adversarial_start": 2000, "levels": 1, "top_code_dim": 64, "run_eagerly": False,
    "unconditional": "null", "covariates": "", "condition_on": "",
    "slice_spacing": 0.0, "field_of_view": 224.0, "guidance": 1.0,
    "covariate_guidance": 1.0, "volume_condition_noise": 0.0, "unconditional_guidance": 1.0,
    "unconditional_covariates": "null", "prior_augment_condition": False, "prior_init": "",
    "prior_snapshot_every": 0, "prior_original_weight": 1,
}


def value_problem(key, value):
    """Why `value` is not a valid `key` (a short phrase), or None when it is."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value != value or value in (float("inf"), float("-inf")):
            return f"must be a finite number, got {value!r}"
    elif isinstance(default, str):
        if not isinstance(value, str):
            return f"must be text, got {value!r}"
        if key in CHOICES and value not in CHOICES[key]:
            return f"must be one of {', '.join(CHOICES[key])}, got {value!r}"
        if key == "split" and split_shares(value) is None:
            return (f"must be three positive shares for train,validate,test (e.g. 0.8,0.1,0.1 "
                    f"or 125,20,20), got {value!r}")
        return None
    low, high = RANGES.get(key, (None, None))
    exclusive = isinstance(low, tuple)
    low = low[0] if exclusive else low
    if low is not None and (value <= low if exclusive else value < low):
        return f"must be {'>' if exclusive else '>='} {low}, got {value!r}"
    if high is not None and value > high:
        return f"must be <= {high}, got {value!r}"
    if key == "prior_kernel_size" and value % 2 == 0:
        return f"must be odd, got {value!r}"
    return None


MIN_GRID = 4  # the smallest code grid side a run may have


def combination_problem(values):
    """Why values that are each valid do not work together (a short sentence), or None."""
    levels = values.get("levels", 1)
    downsamples = values["num_downsamples"] + levels - 1
    factor = 2 ** downsamples
    size = values["image_size"]
    power = ("2**--num-downsamples" if levels == 1
             else "2**(--num-downsamples + 1) (two levels)")
    if values.get("condition_on") and not values.get("covariates"):
        return ("--condition-on needs --covariates FILE.csv (one row per subject: subject, "
                "age, sex, ...)")
    if values.get("condition_on") and levels > 1:
        return "--condition-on works with one level (--levels 1)"
    if values.get("slice_spacing", 0) > 0:
        if values.get("slice_axis", "axial") != "axial":
            return "--slice-spacing cuts axial stacks: drop --slice-axis (or use axial)"
        if values["num_slice_positions"] != values["slices_per_volume"]:
            return (f"--slice-spacing gives every slice of a stack its own position: use "
                    f"--num-slice-positions {values['slices_per_volume']} (= "
                    f"--slices-per-volume)")
    if size // factor < MIN_GRID:
        most = max(0, (size // MIN_GRID).bit_length() - 1 - (levels - 1))
        return (f"--image-size {size} with --num-downsamples {values['num_downsamples']}"
                f"{' and two levels' if levels > 1 else ''} leaves a {size // factor}x"
                f"{size // factor} code grid; the grid must be at least {MIN_GRID}x{MIN_GRID}: use "
                f"--num-downsamples {most} or fewer, or --image-size {MIN_GRID * factor} or more")
    if size % factor:
        below = size // factor * factor
        return (f"--image-size {size} is not divisible by {power} = {factor}: use --image-size "
                f"{below} or {below + factor}, or fewer --num-downsamples")
    return None


def split_shares(text):
    """"125,20,20" or "0.8,0.1,0.1" -> the (train, validate, test) shares, or None when the text
    is not three positive finite numbers (`--split`)."""
    try:
        shares = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        return None
    if len(shares) != 3 or not all(0 < share < float("inf") for share in shares):
        return None
    return shares


def flag_type(key):
    """argparse type of `--key`: parses and range-checks, so a bad value is refused in one line
    when the command line is read."""
    default = DEFAULTS[key]

    def parse(text):
        if isinstance(default, bool):
            value = _parse_bool(text)
        else:
            try:
                value = type(default)(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a {type(default).__name__}, got {text!r}") from None
        problem = value_problem(key, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = type(default).__name__
    return parse


def non_negative_int(text):
    """argparse type for counts such as --samples."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value

HYPERPARAMETERS_FILE = "hyperparameters.json"


class IncompatibleCheckpoint(ValueError):
    """A checkpoint was trained with other architecture hyperparameters than asked for."""


def _parse_bool(text):
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (`prog: error: ...`), not the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_arguments(parser, keys=None):
    """Adds a `--flag` for each default (all, or only `keys`) to an argparse parser."""
    for key, value in DEFAULTS.items():
        if keys is not None and key not in keys:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):  # `--flag` alone means true; `--flag false` also works
            parser.add_argument(flag, dest=key, type=flag_type(key), nargs="?", const=True,
                                default=None, help=f"default: {str(value).lower()}")
        else:
            parser.add_argument(flag, dest=key, type=flag_type(key), default=None,
                                help=f"default: {_default_text(key, value)}")
    return parser


def _default_text(key, value):
    """A default as `--help` shows it: an empty `images_dir` is the run's own figures folder,
    any other empty text is none, and a number is itself (0 too)."""
    if key == "images_dir" and not value:
        return "<output-dir>/images"
    return "none" if value == "" else value


def given_flags(args):
    """The values of the flags the user actually gave ({key: value})."""
    return {key: getattr(args, key) for key in DEFAULTS if getattr(args, key, None) is not None}


def resolve(args, base=None):
    """Returns `base` (default: the defaults) updated with every flag the user actually gave;
    an empty `images_dir` becomes the run's own figures folder, `<output_dir>/images`."""
    values = dict(DEFAULTS if base is None else base, **given_flags(args))
    if not values["images_dir"]:
        values["images_dir"] = str(pathlib.Path(values["output_dir"]) / "images")
    return values


def save(values, folder):
    """Writes `values` as JSON into `folder` and returns the file path."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HYPERPARAMETERS_FILE
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return path


class InvalidHyperparameters(ValueError):
    """A saved hyperparameters.json is unreadable, incomplete or holds invalid values."""


def load(folder):
    """Reads and validates the hyperparameters a run saved.

    Keys added to the project after the run was written take the value that reproduces what the
    run did (`LEGACY_VALUES`); any other missing key, a value of the wrong type or out of range,
    and unreadable JSON raise `InvalidHyperparameters` naming the file, the keys and the fix.
    """
    path = pathlib.Path(folder) / HYPERPARAMETERS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `python train.py --output-dir {folder}` first, "
            f"or point --output-dir at a folder that a training run wrote.")
    fix = "restore the file, or retrain with `python train.py --overwrite --output-dir " \
          f"{folder}`"
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidHyperparameters(f"{path} is not valid JSON ({error}): {fix}") from None
    if not isinstance(saved, dict):
        raise InvalidHyperparameters(f"{path} does not hold a JSON object: {fix}")
    values = {key: saved.get(key, LEGACY_VALUES.get(key)) for key in DEFAULTS}
    missing = [key for key in DEFAULTS if key not in saved and key not in LEGACY_VALUES]
    problems = [f"missing key {key!r}" for key in missing]
    problems += [f"{key} {value_problem(key, values[key])}" for key in DEFAULTS
                 if key not in missing and value_problem(key, values[key])]
    if not problems and combination_problem(values):
        problems.append(combination_problem(values))
    if problems:
        raise InvalidHyperparameters(f"{path} is invalid: " + "; ".join(problems) + f". Fix: {fix}")
    return values


def check_compatible(saved, wanted, source, keys=None):
    """Raises IncompatibleCheckpoint naming every architecture value (of `keys`, default all
    of ARCHITECTURE_KEYS) that differs."""
    clashes = [f"{key}: checkpoint has {saved.get(key)!r}, this run asks for {wanted.get(key)!r}"
               for key in (keys or ARCHITECTURE_KEYS) if saved.get(key) != wanted.get(key)]
    if clashes:
        raise IncompatibleCheckpoint(
            f"The checkpoint in {source} was trained with other hyperparameters:\n  "
            + "\n  ".join(clashes)
            + "\nUse the same values (drop the flags), or a new --output-dir to train from "
              "scratch.")


# Values a resumed run may change without notice: where it writes, how long it trains, how it
# reports.
RESUME_FREE_KEYS = ("output_dir", "images_dir", "data_dir", "epochs", "prior_epochs", "patience",
                    "prior_patience", "run_eagerly", "prior_init", "prior_snapshot_every")


def resume_changes(saved, wanted):
    """The training settings (not architecture, not `RESUME_FREE_KEYS`) in which a resumed run
    differs from the values its folder saved: [(key, saved value, value asked for now)]."""
    return [(key, saved.get(key), wanted.get(key)) for key in DEFAULTS
            if key not in ARCHITECTURE_KEYS and key not in RESUME_FREE_KEYS
            and saved.get(key) != wanted.get(key)]


def check_model(model, values, source):
    """Raises IncompatibleCheckpoint when a loaded model's architecture attributes (those of
    ARCHITECTURE_KEYS it has) differ from `values`. The scripts refuse flags that differ from a
    run's saved values before they load a model, so a difference here is between the checkpoint
    and its folder's hyperparameters.json (an edited file, or one of another run)."""
    # Only plain values: a model may have an attribute of the same name that is something else
    # (the prior's `attention` holds its attention blocks; `--attention` is the VQ-VAE's).
    built = {key: getattr(model, key) for key in ARCHITECTURE_KEYS
             if isinstance(getattr(model, key, None), (bool, int, float, str))}
    clashes = [f"{key}: the checkpoint has {value!r}, hyperparameters.json says "
               f"{values.get(key)!r}" for key, value in built.items() if values.get(key) != value]
    if clashes:
        saved = pathlib.Path(source).parent / HYPERPARAMETERS_FILE
        raise IncompatibleCheckpoint(
            f"{source} does not match {saved}:\n  " + "\n  ".join(clashes)
            + f"\n{saved} was edited or belongs to another run: restore it (the values the "
              f"checkpoint was trained with), or retrain with --overwrite.")
