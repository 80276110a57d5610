"""Using a trained run: its evaluation split, reconstructions, code grids and new samples.

predict.py, similarity.py, train.py and benchmark.py share these, so no script imports another.
"""
from __future__ import annotations

import math
import pathlib
import sys
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import keras
import numpy as np
from numpy.typing import ArrayLike

from brainvq.data import covariates, layouts
from brainvq.errors import OutputBlocked
from brainvq.generation.inferer import (  # noqa: F401 (Request: the scripts' name for it)
    SAMPLING_BATCH,
    Request,
    SamplingSettings,
    SliceInferer,
    stratified_positions,
    stratified_rows,
)
from brainvq.hints import PathLike
from brainvq.output import figures
from brainvq.progress import progress_bar
from brainvq.runs import run_folder
from brainvq.runs.run import Run
from brainvq.runs.run_folder import RunError

if TYPE_CHECKING:
    from brainvq.data.slice_sets import SliceSet


def load_test_split(values: Mapping[str, Any], split: str = "test") -> SliceSet:
    """The evaluation split of the run's data (the demo data if its folder is absent)."""
    splits, description = layouts.load_splits_for(values)
    print(description)
    return splits[split]


def reconstruct(vqvae: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Reconstructions of `images` [N, S, S, 1], clipped to [0, 1]."""
    return np.clip(vqvae.predict(images, batch_size=batch_size, verbose=0), 0.0, 1.0)


def encode_all(vqvae: keras.Model, images: np.ndarray, batch_size: int = 64,
               what: str = "slices") -> np.ndarray:
    """Code grids [N, g, g] int32 of `images` (packed two-level codes [N, t*t + g*g] for a
    VQ-VAE-2), in batches (a progress line, "encoding N {what}", for large sets)."""
    starts = range(0, len(images), batch_size)
    progress = progress_bar(len(starts), f"encoding {len(images)} {what}", minimum=50)
    grids = []
    for start in starts:
        grids.append(keras.ops.convert_to_numpy(vqvae.encode(images[start:start + batch_size])))
        progress.add(1)
    if not grids:
        return np.zeros((0,) + tuple(vqvae.code_shape), np.int32)
    return np.concatenate(grids).astype(np.int32)


def samples_folder(images_dir: PathLike, pattern: str, what: str = "samples") -> pathlib.Path:
    """`<images_dir>/samples`, created, without the files matching `pattern` an earlier call
    left there (the folder holds one call's `what`).

    Raises:
        OutputBlocked: a file stands where the folder goes.
    """
    folder = pathlib.Path(images_dir) / "samples"
    if folder.exists() and not folder.is_dir():
        raise OutputBlocked(f"{folder} is a file, not a folder: the {what} go there. Move the "
                            f"file, or choose another --images-dir")
    folder.mkdir(parents=True, exist_ok=True)
    for earlier in folder.glob(pattern):
        earlier.unlink()
    return folder


def write_samples(images: np.ndarray, images_dir: PathLike, slice_index: int | None = None,
                  requested: Mapping[str, str] | None = None) -> pathlib.Path:
    """Writes a grid of samples and each sample as its own PNG; returns the grid's path. The
    title names the slice index and the `requested` covariates ({name: value text})."""
    from PIL import Image

    images_dir = pathlib.Path(images_dir)
    folder = samples_folder(images_dir, "sample_*.png")
    for number, image in enumerate(images):
        pixels = (np.clip(image[..., 0], 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"sample_{number:03d}.png")
    conditions = [] if slice_index is None else [f"slice index {slice_index}"]
    conditions += [f"{name} {value}" for name, value in (requested or {}).items()]
    condition = ", ".join(conditions) or "unconditional"
    grid = images_dir / "samples.png"
    figures.plot_image_grid(images, grid, columns=min(8, len(images)),
                            title=f"{len(images)} new synthetic slices ({condition})")
    return grid


def samples_by_slice_request(values: Mapping[str, Any], output_dir: PathLike,
                             slices: SliceSet | None, rows: int = 8, columns: int = 6,
                             covariates: np.ndarray | None = None) -> tuple[Request, np.ndarray]:
    """The samples of the slice-conditioned figure: one row per slice position, from the bottom
    of the brain to its top, `columns` samples each; the positions are spread over those the
    run's training slices had (or, for a run that did not record them, those of `slices`).
    Returns (a `Request`, the positions)."""
    counts = run_folder.slice_position_counts(output_dir, values["num_slice_positions"])
    if counts is not None and counts.sum() > 0:
        present = np.flatnonzero(counts > 0)
    elif slices is not None:
        present = np.unique(np.asarray(slices.slice_index))
    else:
        present = np.arange(values["num_slice_positions"])
    positions = present[np.linspace(0, len(present) - 1, min(rows, len(present))).round()
                        .astype(int)]
    requested = np.repeat(positions, columns).astype(np.int32)
    return Request(len(requested), requested, covariates), positions


def plot_samples_by_slice(images: np.ndarray, positions: np.ndarray, images_dir: PathLike,
                          columns: int = 6) -> pathlib.Path:
    """`samples_by_slice.png` from the samples of `samples_by_slice_request`; returns its path."""
    titles = [f"slice {position}" if column == 0 else ""
              for position in positions for column in range(columns)]
    return figures.plot_image_grid(
        images, pathlib.Path(images_dir) / "samples_by_slice.png", columns=columns,
        titles=titles, title="Slice-conditioned samples, one row per slice position "
                             "(bottom of the brain first)")


def generate(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike, count: int,
             slice_index: int | ArrayLike | None = None, temperature: float | None = None,
             top_k: int | None = None, seed: int | None = None,
             covariates: ArrayLike | None = None, prior: keras.Model | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Samples `count` code grids from the prior and decodes them into images [N, S, S, 1].

    With `slice_index` None the samples are unconditional: as `values["unconditional"]` says,
    each one's slice position drawn as often as the training slices have it and the grid
    sampled conditioned on it ("positions", guided on it at the run's
    `unconditional_guidance`), or the grid sampled under the prior's no-condition row ("null").
    Samples at a requested `slice_index` are drawn with the run's `guidance` on it. Requested
    covariates are guided at the run's `covariate_guidance`; samples of a prior trained on
    covariates that request none (at a slice position or not) take none
    (`unconditional_covariates` "null") or one training subject's each, unguided ("drawn").
    """
    (images, codes), = generate_together(
        values, vqvae, output_dir, [Request(count, slice_index, covariates)],
        temperature=temperature, top_k=top_k, seed=seed, prior=prior)
    return images, codes


def generate_together(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                      requests: Sequence[Request], temperature: float | None = None,
                      top_k: int | None = None, seed: int | None = None,
                      prior: keras.Model | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`draw` for a run given as its values, VQ-VAE and folder (and, when loaded, its prior)."""
    run = Run(pathlib.Path(output_dir), values, vqvae)
    if prior is not None:
        run.prior = prior
    return draw(run, requests, temperature=temperature, top_k=top_k, seed=seed)


def draw(run: Run, requests: Sequence[Request], temperature: float | None = None,
         top_k: int | None = None, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples every `Request` from a `Run` in one sampling call, each as `generate` would (its
    own slice guidance: the run's `guidance` where it asks for a position, none where it does
    not), so all of them share one compiled sampler; returns one (images, codes) per request.
    `temperature`, `top_k` and `seed` default to the run's."""
    if run.values.get("slab_depth"):
        raise RunError(f"{run.folder} draws whole heads as slabs (--slab-depth "
                       f"{run.values['slab_depth']}): its prior's codes are not slices. Sample "
                       f"volumes (`predict.py --volumes N`, `similarity.py --volumes N`)")
    seed = run.values["seed"] if seed is None else seed
    settings = SamplingSettings.from_values(run.values, temperature=temperature, top_k=top_k)
    sampler = inferer_for(run, settings, requests)
    count = sum(request.count for request in requests)
    progress = progress_bar(count, f"sampling {count} slices", minimum=SAMPLING_BATCH + 1)
    return sampler(requests, seed, progress=progress)


def recorded_slice_positions(folder: PathLike, num_slice_positions: int) -> np.ndarray:
    """[P] how often the run's training slices have each position; uniform, with a printed
    note, when the run recorded none (trained before they were recorded)."""
    return _uniform_if_unrecorded(run_folder.slice_position_counts(folder, num_slice_positions),
                                  folder, num_slice_positions)


def _uniform_if_unrecorded(counts: np.ndarray | None, folder: PathLike,
                           num_slice_positions: int) -> np.ndarray:
    """`counts`, or uniform counts with a printed note when the run recorded none."""
    if counts is None or counts.sum() <= 0:
        print(f"note: {folder} records no slice positions of its training slices (trained "
              f"before they were recorded): unconditional samples draw positions uniformly "
              f"from 0 to {num_slice_positions - 1}", file=sys.stderr)
        counts = np.ones(num_slice_positions)
    return counts


def draw_slice_positions(folder: PathLike, num_slice_positions: int, count: int, seed: int
                         ) -> np.ndarray:
    """`count` slice positions (seeded, in random order) in proportion to how often the run's
    training slices have them (`inferer.stratified_positions`)."""
    return stratified_positions(recorded_slice_positions(folder, num_slice_positions), count,
                                seed)


def draw_subject_covariates(folder: PathLike, count: int, seed: int, stage: str = "prior"
                            ) -> np.ndarray:
    """[count, C] float32 covariates rows, each one training subject's as the `stage` recorded
    them (`inferer.stratified_rows`); raises `run_folder.subject_covariates`' RunError when it
    recorded none."""
    return stratified_rows(run_folder.subject_covariates(folder, stage), count, seed)


def inferer_for(run: Run, settings: SamplingSettings, requests: Sequence[Request] = ()
                ) -> SliceInferer:
    """A `SliceInferer` over a `Run`'s models with the distributions it recorded: the training
    slices' positions (uniform, with a printed note, when it recorded none) and, where
    `requests` draw them, the training subjects' covariates rows; with a `pose_spread`, the
    training slices' poses."""
    counts = None
    if settings.unconditional == "positions":
        counts = _uniform_if_unrecorded(run.slice_position_counts, run.folder,
                                        run.values["num_slice_positions"])
    poses = run.slice_poses if settings.pose_spread else None
    sampler = SliceInferer(run.vqvae, run.prior, settings, slice_position_counts=counts,
                           slice_poses=poses)
    if any(sampler.draws_subject_covariates(request) for request in requests):
        sampler.subject_covariates = run.subject_covariates()
    return sampler


def check_slice(slice_index: int | None, values: Mapping[str, Any], output_dir: PathLike
                ) -> None:
    """Refuses, in one line, a --slice outside the run's slice positions or at a position no
    training slice had (its condition was never trained)."""
    positions = values["num_slice_positions"]
    if slice_index is None:
        return
    if not 0 <= slice_index < positions:
        raise RunError(f"--slice {slice_index} is out of range: this run's slice positions "
                       f"run from 0 to {positions - 1}; leave --slice out for "
                       f"unconditional samples")
    counts = run_folder.slice_position_counts(output_dir, positions)
    if counts is not None and counts[slice_index] <= 0:
        trained = np.flatnonzero(counts > 0)
        raise RunError(f"--slice {slice_index}: no training slice had this position, so "
                       f"its condition was never trained; this run was trained at "
                       f"positions {_ranges(trained)}")


def _ranges(numbers: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    parts, start = [], None
    for index, number in enumerate(numbers):
        if start is None:
            start = number
        if index + 1 == len(numbers) or numbers[index + 1] != number + 1:
            parts.append(f"{start}" if start == number else f"{start}-{number}")
            start = None
    return ", ".join(parts)


def requested_covariates(output_dir: PathLike, requested: Mapping[str, str],
                         prior: keras.Model | None = None) -> np.ndarray | None:
    """The covariates row [C] (NaN: not requested) for `requested` {name: value text}, checked
    against the run's prior; None when nothing is requested.

    Raises:
        RunError: the run's prior was trained without covariates, or not with one requested.
        DatasetError: a value outside the training range, or a class it never saw.
    """
    if not requested:
        return None
    prior = run_folder.load_prior(output_dir) if prior is None else prior
    specs = getattr(prior, "covariates", [])
    names = [spec["name"] for spec in specs]
    if not specs:
        raise RunError(f"{output_dir} was trained without covariates: drop "
                       f"{', '.join('--' + name for name in requested)} (or train with "
                       f"--covariates FILE.csv --condition-on {','.join(requested)})")
    unknown = [name for name in requested if name not in names]
    if unknown:
        raise RunError(f"{output_dir} was trained on the covariates {', '.join(names)}, "
                       f"not {', '.join(unknown)}")
    row = np.full(len(specs), np.nan, np.float32)
    for column, spec in enumerate(specs):
        if spec["name"] in requested:
            row[column] = covariates.check_request(spec, requested[spec["name"]])
    return row


def covariate_levels(spec: Mapping[str, Any]) -> list[str]:
    """The values a figure shows for a covariate, as text: every class; for age, 25, 45, 65 and
    85 years, each brought inside the training range (IXI's oldest subject is 79: 85 becomes
    79); for any other continuous covariate, four values spread over the training range."""
    if spec["kind"] == "categorical":
        return list(spec["classes"])
    low, high = spec["low"], spec["high"]
    if spec["name"] == "age":
        ages = sorted({min(max(age, math.ceil(low)), math.floor(high))
                       for age in (25, 45, 65, 85)})
        if len(ages) >= 2:
            return [f"{age:g}" for age in ages]
    return [f"{value:.3g}" for value in np.linspace(low, high, 6)[1:-1]]


def samples_by_covariates_request(values: Mapping[str, Any], output_dir: PathLike,
                                  specs: Sequence[Mapping[str, Any]], columns: int = 6
                                  ) -> tuple[Request, list[list[str]], int]:
    """The samples of the figures by covariate: for each covariate in `specs`, one row per
    value of it (`covariate_levels`), the other covariates not given, `columns` seeds each, all
    at one slice position (the middle of those the training slices had). Returns (a `Request`,
    the values shown per covariate, the position)."""
    counts = run_folder.slice_position_counts(output_dir, values["num_slice_positions"])
    trained = (np.flatnonzero(counts > 0) if counts is not None and counts.sum() > 0
               else np.arange(values["num_slice_positions"]))
    position = int(trained[len(trained) // 2])
    levels = [covariate_levels(spec) for spec in specs]
    rows = np.full((sum(map(len, levels)) * columns, len(specs)), np.nan, np.float32)
    row = 0
    for column, (spec, values_shown) in enumerate(zip(specs, levels)):
        for level in values_shown:
            rows[row:row + columns, column] = covariates.encode(spec, level)
            row += columns
    return Request(len(rows), position, rows), levels, position


def plot_samples_by_covariates(images: np.ndarray, specs: Sequence[Mapping[str, Any]],
                               levels: Sequence[Sequence[str]], position: int,
                               images_dir: PathLike, columns: int = 6) -> list[pathlib.Path]:
    """`samples_by_<name>.png` for each covariate, from the samples of
    `samples_by_covariates_request`; returns the figures' paths."""
    paths, start = [], 0
    for spec, values_shown in zip(specs, levels):
        count = len(values_shown) * columns
        titles = [f"{spec['name']} {level}" if index == 0 else ""
                  for level in values_shown for index in range(columns)]
        path = pathlib.Path(images_dir) / f"samples_by_{spec['name']}.png"
        paths.append(figures.plot_image_grid(
            images[start:start + count], path, columns=columns, titles=titles,
            title=f"Samples by {spec['name']}, one row per value, slice position {position}"))
        start += count
    return paths
