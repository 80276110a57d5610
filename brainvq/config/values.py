"""Checking, reading and writing a run's values: each value's range and type (`value_problem`),
values that do not work together (`combination_problem`), the command-line flags built from
`DEFAULTS` (`add_arguments`, `resolve`), `hyperparameters.json` (`save`, `load`, with legacy
values for keys added since), and the checks that a checkpoint fits its values."""
from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Callable, Iterable, Mapping, NoReturn

from brainvq.config.defaults import (
    ARCHITECTURE_KEYS,
    CHOICES,
    DEFAULTS,
    LEGACY_VALUES,
    RANGES,
)
from brainvq.hints import PathLike, Values


def value_problem(key: str, value: Any) -> str | None:
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


def combination_problem(values: Mapping[str, Any]) -> str | None:
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
    depth = values.get("slab_depth", 0)
    if depth:
        if values.get("slice_spacing", 0) <= 0:
            return "--slab-depth codes whole stacks: cut them with --slice-spacing (e.g. 2)"
        if depth & (depth - 1) or values["slices_per_volume"] % depth:
            return (f"--slab-depth {depth} must be a power of 2 that divides --slices-per-volume "
                    f"{values['slices_per_volume']} (e.g. 4 or 8)")
        if values.get("condition_on") or levels > 1:
            return "--slab-depth works with one level and no --condition-on (not yet with them)"
    if values.get("volume_condition_on") and not (values.get("volume_latent") == "3d"
                                                  and values.get("covariates")):
        return ("--volume-condition-on conditions the 3D volume prior: it needs "
                "--volume-latent 3d and --covariates FILE.csv")
    if values.get("volume_latent", "slices") == "3d":
        if values.get("slice_spacing", 0) <= 0:
            return "--volume-latent 3d codes whole stacks: cut them with --slice-spacing (e.g. 2)"
        along = 2 ** values.get("volume_slice_downsamples", 2)
        if values["slices_per_volume"] % along:
            return (f"--volume-latent 3d: --slices-per-volume {values['slices_per_volume']} is "
                    f"not divisible by 2**--volume-slice-downsamples = {along}")
        if values.get("volume_slice_downsamples", 2) > values["num_downsamples"]:
            return (f"--volume-slice-downsamples {values['volume_slice_downsamples']} is more "
                    f"than --num-downsamples {values['num_downsamples']} (the in-plane ones)")
        if depth or uses_context(values) or values.get("condition_on") or levels > 1:
            return ("--volume-latent 3d works with one level and no --slab-depth, "
                    "--context-blocks or --condition-on (not yet with them)")
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


def split_shares(text: str) -> tuple[float, float, float] | None:
    """"125,20,20" or "0.8,0.1,0.1" -> the (train, validate, test) shares, or None when the text
    is not three positive finite numbers (`--split`)."""
    try:
        shares = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        return None
    if len(shares) != 3 or not all(0 < share < float("inf") for share in shares):
        return None
    return shares


def flag_type(key: str) -> Callable[[str], Any]:
    """argparse type of `--key`: parses and range-checks, so a bad value is refused in one line
    when the command line is read."""
    default = DEFAULTS[key]

    def parse(text: str) -> Any:
        if isinstance(default, bool):
            value = parse_bool(text)
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


def non_negative_int(text: str) -> int:
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


def parse_bool(text: str | bool) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (`prog: error: ...`), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_arguments(parser: argparse.ArgumentParser, keys: Iterable[str] | None = None
                  ) -> argparse.ArgumentParser:
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
                                help=f"default: {default_text(key, value)}")
    return parser


def default_text(key: str, value: Any) -> Any:
    """A default as `--help` shows it: an empty `images_dir` is the run's own figures folder,
    any other empty text is none, and a number is itself (0 too)."""
    if key == "images_dir" and not value:
        return "<output-dir>/images"
    return "none" if value == "" else value


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the flags the user actually gave ({key: value})."""
    return {key: getattr(args, key) for key in DEFAULTS if getattr(args, key, None) is not None}


def resolve(args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> Values:
    """Returns `base` (default: the defaults) updated with every flag the user actually gave;
    an empty `images_dir` becomes the run's own figures folder, `<output_dir>/images`."""
    values = dict(DEFAULTS if base is None else base, **given_flags(args))
    if not values["images_dir"]:
        values["images_dir"] = str(pathlib.Path(values["output_dir"]) / "images")
    return values


def save(values: Mapping[str, Any], folder: PathLike) -> pathlib.Path:
    """Writes `values` as JSON into `folder` and returns the file path."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HYPERPARAMETERS_FILE
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return path


class InvalidHyperparameters(ValueError):
    """A saved hyperparameters.json is unreadable, incomplete or holds invalid values."""


def load(folder: PathLike) -> Values:
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


def check_compatible(saved: Mapping[str, Any], wanted: Mapping[str, Any], source: PathLike,
                     keys: Iterable[str] | None = None) -> None:
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


def resume_changes(saved: Mapping[str, Any], wanted: Mapping[str, Any]
                   ) -> list[tuple[str, Any, Any]]:
    """The training settings (not architecture, not `RESUME_FREE_KEYS`) in which a resumed run
    differs from the values its folder saved: [(key, saved value, value asked for now)]."""
    return [(key, saved.get(key), wanted.get(key)) for key in DEFAULTS
            if key not in ARCHITECTURE_KEYS and key not in RESUME_FREE_KEYS
            and saved.get(key) != wanted.get(key)]


def check_model(model: Any, values: Mapping[str, Any], source: PathLike) -> None:
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


def prior_values(values: Values) -> Values:
    """The values a run's priors are built and checked with: with `slab_depth` they draw slab
    codes, so their codebook is the slab autoencoder's (`slab_num_codes`), not the VQ-VAE's."""
    if not values.get("slab_depth"):
        return values
    return dict(values, num_codes=values["slab_num_codes"])


def uses_context(values: Mapping[str, Any]) -> bool:
    """Whether a run's stacks are decoded through a slice-context refiner
    (models/slice_context.py): cut as stacks, one level, `context_blocks` > 0."""
    return (values.get("slice_spacing", 0) > 0 and values.get("levels", 1) == 1
            and values.get("context_blocks", 0) > 0)


def uses_3d_code(values: Mapping[str, Any]) -> bool:
    """Whether a run's volumes are drawn as one 3D code grid (`volume_latent` "3d": a
    `VolumeVQVAE` and a `StackPixelCNN`) rather than slice by slice."""
    return values.get("slice_spacing", 0) > 0 and values.get("volume_latent", "slices") == "3d"
