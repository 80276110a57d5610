"""Are sampled stacks whole brains? Each figure beside the same figure for held-out real volumes.

* **Neighbouring-slice SSIM**: between each slice of a stack and the next. Too low: the slices
  are unrelated brains; too high: the stack repeats one slice.
* **Head volume**: the millilitres of tissue (realism.TISSUE_THRESHOLD) each stack holds, mean
  and spread across stacks: do the synthetic heads come in as many sizes as real ones?
* **Streaks** (`streaks.py`): the streak index (the step between neighbouring slices over the
  in-plane step, inside the head), the share of each head column's power in the upper half of
  the frequencies along the slice axis, and each volume's nearest training volume (3D SSIM).
* **Reslices**: coronal and sagittal planes cut through the stacks (their central part,
  RESLICE_RANGE, at their physical aspect), judged like axial slices: the plausibility statistics
  against real training reslices, and the Fréchet distance, precision and recall in the space of
  a feature network trained on real reslices of the training subjects only.
* **Per-slice realism**: the stacks' own axial slices against independent samples at the same
  positions, in the slice feature network's space (realism.py). A set of whole stacks holds as
  many brains as stacks, a set of independent slices one brain per slice, and the Fréchet
  distance grows as a set's spread shrinks; so the same two sets are also cut from the held-out
  real volumes (`real_slice_sets`): their ratio shows how far grouping alone moves the figure.
"""
from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from skimage.metrics import structural_similarity

from brainvq.data.slice_sets import square_resize
from brainvq.data.stacks import subject_stacks
from brainvq.evaluation import feature_network, realism, streaks
from brainvq.generation import generate
from brainvq.generation import stacks as stack_sampling
from brainvq.hints import PathLike, Splits
from brainvq.output import figures
from brainvq.runs import run_folder

if TYPE_CHECKING:
    import keras

RESLICE_RANGE = (0.3, 0.7)  # share of the axis the coronal and sagittal planes are cut from
RESLICES_PER_VOLUME = 8


def neighbour_ssim(stack: np.ndarray) -> np.ndarray:
    """[S - 1] SSIM (data range 1) between slice k and slice k + 1 of a stack [S, H, W]."""
    stack = np.asarray(stack, np.float64)
    return np.array([structural_similarity(stack[k], stack[k + 1], data_range=1.0)
                     for k in range(len(stack) - 1)])


def head_volume(stack: np.ndarray, pixel: float, spacing: float) -> float:
    """Millilitres of tissue in a stack [S, H, W] of slices `spacing` mm apart, pixels `pixel`
    mm wide: its voxels above realism.TISSUE_THRESHOLD."""
    voxels = np.count_nonzero(np.asarray(stack) > realism.TISSUE_THRESHOLD)
    return voxels * pixel * pixel * spacing / 1000.0


def head_volumes(stacks: Sequence[np.ndarray], pixel: float, spacing: float) -> np.ndarray:
    """[V] `head_volume` of each stack of `stacks` (an array [V, S, H, W] or an iterable)."""
    return np.array([head_volume(stack, pixel, spacing) for stack in stacks])


def reslices(stack: np.ndarray, plane: str, pixel: float, spacing: float, image_size: int,
             count: int = RESLICES_PER_VOLUME) -> tuple[np.ndarray, np.ndarray]:
    """`count` coronal or sagittal planes of a stack [S, H, W] (bottom first), spread over
    RESLICE_RANGE of the axis, upright (superior at the top), stretched to their physical
    aspect and squared: [count, image_size, image_size, 1], and their order 0 .. count - 1."""
    stack = np.asarray(stack, np.float32)
    axis = {"coronal": 1, "sagittal": 2}[plane]
    side = stack.shape[axis]
    indices = np.linspace(RESLICE_RANGE[0] * (side - 1), RESLICE_RANGE[1] * (side - 1),
                          count).round().astype(int)
    height = max(int(round(stack.shape[0] * spacing / pixel)), 1)
    images = []
    for index in indices:
        cut = np.take(stack, index, axis=axis)[::-1]  # [S, W or H], superior first
        stretched = np.asarray(Image.fromarray(cut).resize((cut.shape[1], height),
                                                           Image.Resampling.BILINEAR))
        images.append(square_resize(np.clip(stretched, 0.0, 1.0), image_size))
    return np.stack(images)[..., None].astype(np.float32), np.arange(count, dtype=np.int32)


def real_slice_sets(held_out: Mapping[int, np.ndarray], count: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of held-out real axial slices shaped like the samples' two: every slice of
    `count` whole stacks, and the same number of slices per position drawn each from a random
    held-out subject. At most half the held-out subjects are taken as whole stacks (with all of
    them the two sets would be the same slices). Returns (grouped, spread) [N, H, W, 1]."""
    stacks = np.stack(list(held_out.values()))  # [V, S, H, W]
    subjects, length = stacks.shape[:2]
    count = max(min(int(count), subjects // 2), 1)
    rng = np.random.default_rng(seed)
    grouped = stacks[rng.choice(subjects, count, replace=False)].reshape(
        (-1,) + stacks.shape[2:])
    picks = np.stack([rng.choice(subjects, count, replace=False)
                      for _ in range(length)], axis=1)  # [count, S]: a subject per slice
    spread = stacks[picks, np.arange(length)[None, :]].reshape((-1,) + stacks.shape[2:])
    return grouped[..., None], spread[..., None]


def _reslice_set(stacks: Sequence[np.ndarray], plane: str, pixel: float, spacing: float,
                 image_size: int) -> tuple[np.ndarray, np.ndarray]:
    cuts = [reslices(stack, plane, pixel, spacing, image_size) for stack in stacks]
    return np.concatenate([cut[0] for cut in cuts]), np.concatenate([cut[1] for cut in cuts])


def _plane_figures(plane: str, train: tuple[np.ndarray, np.ndarray],
                   held_out: tuple[np.ndarray, np.ndarray], samples: tuple[np.ndarray, np.ndarray],
                   cache_dir: PathLike, seed: int, with_features: bool = True) -> dict[str, Any]:
    """Plausibility and (`with_features`) feature-space figures of one reslice plane; each
    argument a pair (images, order) of reslices."""
    ranges = realism.plausibility_ranges(train[0])
    real_ok, _ = realism.plausible(held_out[0], ranges)
    sample_ok, failures = realism.plausible(samples[0], ranges)
    plausibility = {"plausible_real": float(real_ok.mean()),
                    "plausible_samples": float(sample_ok.mean()), "failures": failures}
    if not with_features:
        return plausibility
    folder = pathlib.Path(cache_dir) / f"reslice_features_{plane}"
    folder.mkdir(parents=True, exist_ok=True)
    network = feature_network.load_or_train(folder, train[0], train[1], RESLICES_PER_VOLUME,
                                            seed=seed)
    features = {name: feature_network.features_and_positions(network, images[0],
                                                             RESLICES_PER_VOLUME)[0]
                for name, images in (("train", train), ("real", held_out),
                                     ("samples", samples))}
    distances, size = realism.equal_size_report(
        features["train"], {"real": features["real"], "samples": features["samples"]})
    return {**plausibility, "compared_set_size": size,
            **{f"{metric}_{name}": value for name, row in distances.items()
               for metric, value in row.items()}}


def _plot_neighbour_ssim(real_ssim: np.ndarray, sample_ssim: np.ndarray, real_count: int,
                         count: int, images_dir: PathLike, spacing: float) -> None:
    """`volume_neighbour_ssim.png`: the neighbouring-slice SSIMs of the real and synthetic
    volumes, overlaid."""
    figures.plot_overlaid_histograms(
        {f"{real_count} held-out real volumes": real_ssim,
         f"{count} synthetic volumes": sample_ssim},
        pathlib.Path(images_dir) / "volume_neighbour_ssim.png",
        xlabel="SSIM between neighbouring slices",
        title=f"Neighbouring-slice SSIM ({spacing:g} mm apart)")


def volume_report(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                  splits: Splits, split: str, count: int, seed: int, cache_dir: PathLike,
                  images_dir: PathLike | None, feature_figures: bool = True,
                  independent: bool = True, stacks: ArrayLike | None = None
                  ) -> dict[str, Any] | None:
    """Samples `count` stacks and prints the figures of the module docstring beside those of
    the held-out real volumes of `split`; writes `volume_neighbour_ssim.png` (unless
    `images_dir` is None). `feature_figures=False` leaves out the figures in a feature
    network's space (Fréchet distance, precision, recall of the reslices and the axial slices):
    no network is trained. `independent=False` leaves out the independent slices (as many as
    the stacks hold, sampled one by one: the stacks' slices are then judged alone). `stacks`
    ([V, S, H, W] in [0, 1]) judges those instead of sampling (their time is not known; `count`
    becomes V). Returns a dict."""
    length = stack_sampling.stack_length(values)
    independent = independent and not values.get("slab_depth")  # a slab prior draws slabs
    spacing, pixel = values["slice_spacing"], values["field_of_view"] / values["image_size"]
    held_out = subject_stacks(splits[split], length)
    train = subject_stacks(splits["train"], length)
    if not held_out or not train:
        print(f"volumes: no whole stacks of {length} slices among the {split} or training "
              f"subjects (their volumes end above the stack's lowest slice): nothing to compare")
        return None
    prior = run_folder.load_prior(output_dir) if stacks is None or independent else None
    if stacks is None:
        samples, _, seconds = stack_sampling.generate_stacks(values, vqvae, output_dir, count,
                                                             seed=seed, prior=prior)
    else:
        samples, seconds = np.asarray(stacks, np.float32), float("nan")
        count = len(samples)
    real_ssim = np.concatenate([neighbour_ssim(stack) for stack in held_out.values()])
    sample_ssim = np.concatenate([neighbour_ssim(stack) for stack in samples])
    report = {"seconds_per_volume": seconds, "neighbour_ssim_samples": float(sample_ssim.mean()),
              "neighbour_ssim_real": float(real_ssim.mean())}
    for name, group in (("samples", samples), ("real", held_out.values())):
        millilitres = head_volumes(group, pixel, spacing)
        report[f"head_volume_mean_{name}"] = float(millilitres.mean())
        report[f"head_volume_sd_{name}"] = float(millilitres.std())
    report.update(streaks.streak_report(samples, held_out.values(), train.values()))
    if images_dir is not None:
        _plot_neighbour_ssim(real_ssim, sample_ssim, len(held_out), count, images_dir, spacing)
    size = values["image_size"]
    for plane in ("coronal", "sagittal"):
        row = _plane_figures(
            plane, _reslice_set(train.values(), plane, pixel, spacing, size),
            _reslice_set(held_out.values(), plane, pixel, spacing, size),
            _reslice_set(samples, plane, pixel, spacing, size), cache_dir, values["seed"],
            with_features=feature_figures)
        report.update({f"{plane}_{key}": value for key, value in row.items()})
    sets = {"stacks": samples.reshape((-1,) + samples.shape[2:])[..., None]}
    if independent:
        positions = np.tile(np.arange(length, dtype=np.int32), count)
        sets["independent"], _ = generate.generate(values, vqvae, output_dir, len(positions),
                                                    slice_index=positions, seed=seed + 2,
                                                    prior=prior)
    ranges = realism.plausibility_ranges(splits["train"].images)
    for name, images in sets.items():
        key = "stack_slices" if name == "stacks" else name
        report[f"plausible_{key}"] = float(realism.plausible(images, ranges)[0].mean())
    if feature_figures:
        network = feature_network.load_or_train(
            cache_dir, splits["train"].images, splits["train"].slice_index,
            values["num_slice_positions"], seed=values["seed"])
        grouped, spread = real_slice_sets(held_out, count, seed=seed)
        features = {name: feature_network.features_and_positions(
            network, images, values["num_slice_positions"])[0]
            for name, images in (("train", splits["train"].images), *sets.items(),
                                 ("grouped", grouped), ("spread", spread))}
        # the synthetic pair and the real pair are each scored at their own common size
        distances, _ = realism.equal_size_report(
            features["train"], {name: features[name] for name in sets})
        real, _ = realism.equal_size_report(
            features["train"], {"grouped": features["grouped"], "spread": features["spread"]})
        report["frechet_stack_slices"] = distances["stacks"]["frechet"]
        if independent:
            report["frechet_independent"] = distances["independent"]["frechet"]
        report["frechet_real_stack_slices"] = real["grouped"]["frechet"]
        report["frechet_real_spread_slices"] = real["spread"]["frechet"]
        report["real_stack_count"] = len(grouped) // length
    _print(report, count, len(held_out), length, spacing)
    return report


def _print(report: Mapping[str, Any], count: int, real_count: int, length: int,
           spacing: float) -> None:
    print(f"\nWhole volumes: {count} synthetic stacks of {length} slices ({spacing:g} mm apart; "
          f"{report['seconds_per_volume']:.1f} s per volume) vs {real_count} held-out real "
          f"volumes")
    print(f"  {'':40s} {'samples':>10s} {'real':>10s}")
    print(f"  {'neighbouring-slice SSIM (mean)':40s} {report['neighbour_ssim_samples']:10.4f} "
          f"{report['neighbour_ssim_real']:10.4f}")
    print(f"  {'head volume (mL): mean, sd across volumes':40s} "
          f"{report['head_volume_mean_samples']:5.0f},{report['head_volume_sd_samples']:4.0f} "
          f"{report['head_volume_mean_real']:5.0f},{report['head_volume_sd_real']:4.0f}")
    for figure, label in (("streak_index", "streak index: slice step / in-plane step"),
                          ("high_frequency_share", "high-frequency share along the slices")):
        sample, real = (f"{report[f'{figure}_{name}']:5.3f},{report[f'{figure}_sd_{name}']:4.3f}"
                        for name in ("samples", "real"))
        print(f"  {label:40s} {sample} {real}"
              f"   (mean, sd across volumes)")
    print(f"  {'  its parts: slice step, in-plane step':40s} "
          f"{report['slice_step_samples']:.3f},{report['in_plane_step_samples']:.3f} "
          f"{report['slice_step_real']:.3f},{report['in_plane_step_real']:.3f}"
          f"   (a blurred decoder lowers the second)")
    print(f"  {'nearest training volume, 3D SSIM: max':40s} "
          f"{report['nearest_training_ssim_max_samples']:10.4f} "
          f"{report['nearest_training_ssim_max_real']:10.4f}"
          f"   (a sample above the real maximum is nearer a training head than any unseen one)")
    for plane in ("coronal", "sagittal"):
        print(f"  {plane + ' reslices plausible':40s} "
              f"{report[f'{plane}_plausible_samples']:10.1%} "
              f"{report[f'{plane}_plausible_real']:10.1%}")
        if f"{plane}_frechet_samples" not in report:
            continue
        print(f"  {plane + ' reslices Fréchet distance':40s} "
              f"{report[f'{plane}_frechet_samples']:10.4f} "
              f"{report[f'{plane}_frechet_real']:10.4f}")
        print(f"  {plane + ' reslices precision / recall':40s} "
              f"{report[f'{plane}_precision_samples']:5.2f}/{report[f'{plane}_recall_samples']:4.2f}"
              f" {report[f'{plane}_precision_real']:5.2f}/{report[f'{plane}_recall_real']:4.2f}")
    independent = "plausible_independent" in report
    print(f"  {'':40s} {'stacks':>10s} {'independent' if independent else '':>12s}")
    print(f"  {'axial slices plausible':40s} {report['plausible_stack_slices']:10.1%} "
          + (f"{report['plausible_independent']:12.1%}" if independent else ""))
    if "frechet_stack_slices" in report:
        print(f"  {'axial slices Fréchet distance':40s} {report['frechet_stack_slices']:10.4f} "
              + (f"{report['frechet_independent']:12.4f}   ratio "
                 f"{report['frechet_stack_slices'] / report['frechet_independent']:.2f}"
                 if independent else ""))
        print(f"  {'held-out real slices, Fréchet distance':40s} "
              f"{report['frechet_real_stack_slices']:10.4f} "
              f"{report['frechet_real_spread_slices']:12.4f}   ratio "
              f"{report['frechet_real_stack_slices'] / report['frechet_real_spread_slices']:.2f}")
        print(f"    (real: every slice of {report['real_stack_count']} held-out volumes against as "
              f"many slices per position, each from a random held-out subject)")
    if count < real_count:
        print(f"  note: {count} synthetic volumes against {real_count} real ones: every set is "
              f"scored at the smaller size, where a Fréchet distance is mostly estimation noise; "
              f"--volumes {real_count} scores them at full size")
