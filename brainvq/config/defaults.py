"""Every default of the pipeline, in one place, with the ranges, choices and legacy values that
check them: `DEFAULTS` (one key per `--flag`), the keys that fix a model's shape, and the values
that reproduce what runs saved before a key existed (`LEGACY_VALUES`)."""

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
    # (at the start without a warm-up, at the warm-up's end with one); docs/experiments.md
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
    # Whole volumes (runs cut as stacks): > 0, a slab autoencoder (models/slabs.py) codes each
    # stack's slice codes again as one code per this many slices of each code column (a power
    # of 2 that divides slices_per_volume), and both priors draw those slab codes instead of
    # slice codes: a latent that spans the slices (issue 52). 0: the priors draw slice codes.
    "slab_depth": 0,
    "slab_num_codes": 512,  # the slab codebook's size
    "slab_channels": 64,  # the slab autoencoder's width
    "slab_epochs": 10,  # the slab autoencoder's training epochs (it keeps its best)
    # Whole volumes (runs cut as stacks, one level): > 0, a slice-context refiner
    # (models/slice_context.py) of this many 3D residual blocks refines each stack's quantized
    # latents along its slices before the VQ-VAE decodes them, so neighbouring slices are not
    # rendered with a step between them; it sees this many slices above and below. 0: none
    # (experimental: 4 halves the streaks but smooths the axial slices, docs/experiments.md).
    "context_blocks": 0,
    "context_epochs": 10,  # the refiner's training epochs (it keeps its best)
    # Whole volumes (runs cut as stacks): what the volume prior draws. "slices": each slice's
    # codes given the slice below (the slice VQ-VAE decodes them). "3d": a `VolumeVQVAE`
    # (models/volume_vqvae.py) codes each stack as one 3D grid (8x in-plane, 2**this along the
    # slices) and a `StackPixelCNN` draws its layers bottom up, each given every layer below:
    # heads that hold together in every plane (issue 52, docs/experiments.md).
    "volume_latent": "slices",
    "volume_slice_downsamples": 2,  # "3d": the 3D code's downsamplings along the slices
    "volume_channels": 32,  # "3d": the VolumeVQVAE's width (its first level's channels)
    "volume_upsampling": "transposed",  # "3d": its decoder's upsampling: transposed | resize
    "volume_vqvae_epochs": 10,  # "3d": its training epochs of 250 steps (it keeps its best)
    # "3d": the columns of --covariates the StackPixelCNN is conditioned on (comma-separated,
    # e.g. age,sex,head_volume; a whole head's), independently of the slice prior's
    # --condition-on. Empty: none.
    "volume_condition_on": "",
    # Code-grid augmentation: each training slice is also encoded this many more times, flipped
    # left-right and/or shifted by up to prior_augment_shift pixels, by the frozen VQ-VAE.
    "prior_augment_copies": 8,
    "prior_augment_shift": 4,
    # ... and, from the second copy on, rotated by up to this many degrees and scaled by up to
    # this fraction about the centre (0: neither). With 8 copies, +-8 degrees and +-8% the
    # Fréchet distance of OASIS-1 samples fell from 5.0x to 2.3x its real floor
    # (docs/experiments.md).
    "prior_augment_rotation": 8.0,
    "prior_augment_scale": 0.08,
    # Non-leaking augmentation: the prior is told each training grid's augmentation (flip,
    # shift, rotation, scale; 0 for the grids as they are) and samples at 0, so it learns from
    # the augmented grids without drawing shifted, tilted or resized heads (issue 49). Off: the
    # augmented grids are drawn as often as real ones, and so are their poses.
    "prior_augment_condition": True,
    # ... and, in place of the applied shift across and rotation, each training grid's measured
    # head pose (its slice's centroid offset from the centre column and its tilt, data/pose.py):
    # the prior learns where heads sit and is sampled at a centred, upright pose (issue 49).
    "prior_pose_condition": False,
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
    # (axial) OASIS-1 validation subject, for the default prior (docs/experiments.md)
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
    # training seeds' samples from 6-13x their floor to 1.3-2x (docs/experiments.md).
    "unconditional": "positions",
    # Guidance on the slice position an unconditional sample drew ("positions" only): the same
    # logits as `guidance`, for samples no one asked a position of. 1: none, each drawn from
    # p(codes | position); above 1 each sample is sharpened toward its drawn position, at twice
    # the sampling work.
    "unconditional_guidance": 1.0,
    # Covariates (age, sex, ...) of a sample or volume that requests none (at a requested slice
    # position or not), for a prior trained on them: "null" samples under the prior's
    # no-covariate row; "drawn" gives each sample (each volume: all its slices) one training
    # subject's row, recorded when the prior was trained, and samples conditioned on it without
    # covariate guidance (p(covariates) p(codes | them)). On IXI's validation subjects "drawn"
    # gave the samples more variety (recall, a lower Fréchet distance) (docs/experiments.md).
    "unconditional_covariates": "null",
    # For a prior told its training grids' head poses (prior_pose_condition): the pose each
    # sample is drawn at. 0: centred and upright (the pose the prior is told means "as a slice
    # should sit"); s > 0: the measured pose (centroid offset, tilt) of one training slice at
    # the sample's slice position, times s: s = 1 draws heads as they sit and lean in the
    # training slices, with their variety (docs/experiments.md).
    "pose_spread": 0.0,
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
    "condition_on", "prior_augment_condition", "slab_depth", "slab_num_codes", "slab_channels",
    "context_blocks", "volume_latent", "volume_slice_downsamples", "volume_channels",
    "volume_upsampling", "volume_condition_on",
)

# How a trained prior is sampled (`generation.inferer.SamplingSettings`' fields): a shipped
# model's may be re-chosen without touching its weights (`pretrained.set_sampling_settings`).
SAMPLING_KEYS = ("temperature", "top_k", "guidance", "covariate_guidance", "unconditional",
                 "unconditional_guidance", "unconditional_covariates", "pose_spread")

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
           "unconditional_covariates": ("null", "drawn"),
           "volume_latent": ("slices", "3d"),
           "volume_upsampling": ("transposed", "resize")}

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
    "slab_depth": (0, 64), "slab_num_codes": (2, None), "slab_channels": (1, None),
    "slab_epochs": (1, None), "context_blocks": (0, 32), "context_epochs": (1, None),
    "volume_slice_downsamples": (0, 8), "volume_channels": (1, None),
    "volume_vqvae_epochs": (1, None),
    "prior_augment_copies": (0, None), "prior_augment_shift": (0, None),
    "prior_augment_rotation": (0.0, 45.0), "prior_augment_scale": (0.0, 0.5),
    "patience": (0, None), "prior_patience": (0, None), "prior_snapshot_every": (0, None),
    "prior_original_weight": (1, None),
    "temperature": ((0.0, "exclusive"), None), "top_k": (0, None), "guidance": (0.0, 10.0),
    "covariate_guidance": (0.0, 10.0), "unconditional_guidance": (0.0, 10.0),
    "pose_spread": (0.0, 2.0),
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
    "prior_pose_condition": False, "pose_spread": 0.0,
    "prior_snapshot_every": 0, "prior_original_weight": 1,
    "slab_depth": 0, "slab_num_codes": 512, "slab_channels": 64, "slab_epochs": 10,
    "context_blocks": 0, "context_epochs": 10,
    "volume_latent": "slices", "volume_slice_downsamples": 2, "volume_channels": 32,
    "volume_upsampling": "transposed", "volume_vqvae_epochs": 10, "volume_condition_on": "",
}
