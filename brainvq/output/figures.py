"""Figures (PNG, matplotlib's Agg backend) of the metrics in metrics.py and the benchmarks.

`plot_ssim_histogram`, `plot_metric_by_slice`, `plot_best_worst`, `plot_image_grid`,
`plot_loss_curves`, `plot_volume_planes`, and `make_gif` to animate saved frames; the
benchmarks' own figures are in `benchmarks/plots.py`.
"""
from __future__ import annotations

import csv
import math
import pathlib
from types import ModuleType
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from brainvq.data.arrays import as_batch, check_same_shape
from brainvq.errors import OutputBlocked
from brainvq.hints import PathLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 120


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Figure, path: PathLike) -> pathlib.Path:
    """Saves `figure` as a PNG at `path` (parent folders created), closes it, returns `path`.

    Raises:
        OutputBlocked: a folder (or, above it, a file) stands where the figure goes.
    """
    plt = pyplot()
    path = pathlib.Path(path)
    blocked = next((parent for parent in path.parents if parent.is_file()), None)
    if path.is_dir() or blocked is not None:
        plt.close(figure)
        what = (f"{path} is a folder" if blocked is None
                else f"{blocked} is a file where a folder is needed")
        raise OutputBlocked(f"{what}, so the figure {path.name} cannot be written: move it, or "
                            f"choose another --images-dir")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
    return path


def plot_ssim_histogram(ssim_values: ArrayLike, path: PathLike,
                        title: str = "SSIM of reconstructions") -> pathlib.Path:
    """Histogram of SSIM values with the mean and mean ± std marked.

    Args:
        ssim_values: [N] values (non-finite ones are left out).
        path: the PNG to write.
        title: the figure title.

    Returns:
        `path`.
    """
    plt = pyplot()
    values = np.asarray(ssim_values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    if values.size:
        mean, std = values.mean(), values.std()
        axes.hist(values, bins=min(40, max(5, values.size // 5)), color="tab:blue", alpha=0.75,
                  edgecolor="white", label=f"n = {values.size}")
        axes.axvline(mean, color="black", linewidth=2, label=f"mean {mean:.4f}")
        axes.axvline(mean - std, color="black", linestyle="--", linewidth=1,
                     label=f"± std {std:.4f}")
        axes.axvline(mean + std, color="black", linestyle="--", linewidth=1)
        axes.legend(loc="upper left")
    else:
        axes.text(0.5, 0.5, "no finite values", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlabel("SSIM")
    axes.set_ylabel("number of images")
    axes.set_title(title)
    figure.tight_layout()
    return save(figure, path)


def plot_metric_by_slice(slice_index: ArrayLike, values: ArrayLike, path: PathLike,
                         metric_name: str = "SSIM") -> pathlib.Path:
    """A metric against slice position: every image as a faint dot, mean ± std per slice index.

    Args:
        slice_index: [N] slice index (position in the volume) of each image.
        values: [N] metric values (pairs with a non-finite value or index are left out).
        path: the PNG to write.
        metric_name: name for the axis label and title.

    Returns:
        `path`.
    """
    plt = pyplot()
    index = np.asarray(slice_index, dtype=np.float64).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if index.shape != values.shape:
        raise ValueError(f"{index.size} slice indices for {values.size} values")
    keep = np.isfinite(index) & np.isfinite(values)
    index, values = index[keep], values[keep]
    figure, axes = plt.subplots(figsize=(7.2, 4.2))
    if values.size:
        axes.scatter(index, values, s=8, color="tab:gray", alpha=0.3, zorder=1,
                     label=f"images (n = {values.size})")
        positions = np.unique(index)
        means = np.array([values[index == position].mean() for position in positions])
        stds = np.array([values[index == position].std() for position in positions])
        axes.fill_between(positions, means - stds, means + stds, color="tab:blue", alpha=0.25,
                          zorder=2, label="± std")
        axes.plot(positions, means, color="tab:blue", marker="o", markersize=3, zorder=3,
                  label="mean per slice index")
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, "no finite values", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_xlabel("slice index")
    axes.set_ylabel(metric_name)
    axes.set_title(f"{metric_name} by slice index")
    figure.tight_layout()
    return save(figure, path)


def plot_best_worst(references: ArrayLike, reconstructions: ArrayLike, ssim_values: ArrayLike,
                    path: PathLike, count: int = 4) -> pathlib.Path:
    """The worst and best reconstructions: original | reconstruction | |difference| per row.

    Rows are the `count` lowest-SSIM images then the `count` highest; if there are no more than
    2 * `count` images, all of them are shown, worst first. Images with a NaN SSIM are skipped.

    Args:
        references: originals [N, H, W] or [N, H, W, 1], values in [0, 1].
        reconstructions: the same shape.
        ssim_values: [N] SSIM of each pair.
        path: the PNG to write.
        count: rows for each of worst and best.

    Returns:
        `path`.
    """
    plt = pyplot()
    references, reconstructions = as_batch(references), as_batch(reconstructions)
    check_same_shape(references, reconstructions)
    values = np.asarray(ssim_values, dtype=np.float64).ravel()
    if values.size != len(references):
        raise ValueError(f"{values.size} SSIM values for {len(references)} images")
    order = np.flatnonzero(np.isfinite(values))
    order = order[np.argsort(values[order], kind="stable")]
    if order.size == 0:
        raise ValueError("no finite SSIM values to rank")
    if order.size <= 2 * count:
        rows = [(f"rank {rank + 1}/{order.size}", index) for rank, index in enumerate(order)]
    else:
        rows = ([(f"worst {rank + 1}", index) for rank, index in enumerate(order[:count])]
                + [(f"best {rank + 1}", index) for rank, index in
                   enumerate(order[::-1][:count])][::-1])
    differences = np.abs(references - reconstructions)
    difference_max = max(float(max(differences[index].max() for _, index in rows)), 1e-6)
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for row, (label, index) in enumerate(rows):
        panels = ((references[index], f"{label}: original", "gray", 1.0),
                  (reconstructions[index], f"reconstruction, SSIM {values[index]:.4f}", "gray",
                   1.0),
                  (differences[index], f"|difference| (max {differences[index].max():.3f})",
                   "magma", difference_max))
        for column, (image, title, cmap, vmax) in enumerate(panels):
            axes[row, column].imshow(image, cmap=cmap, vmin=0.0, vmax=vmax)
            axes[row, column].set_title(title, fontsize=9)
            axes[row, column].axis("off")
    figure.suptitle("Worst and best reconstructions by SSIM")
    figure.tight_layout()
    return save(figure, path)


def plot_image_grid(images: ArrayLike, path: PathLike, columns: int = 8,
                    titles: Sequence[str] | None = None, title: str | None = None
                    ) -> pathlib.Path:
    """A grid of grayscale images shown on [0, 1].

    Args:
        images: [N, H, W] or [N, H, W, 1].
        path: the PNG to write.
        columns: images per row.
        titles: optional N strings, one above each image.
        title: optional figure title.

    Returns:
        `path`.
    """
    plt = pyplot()
    images = as_batch(images)
    if len(images) == 0:
        raise ValueError("no images to plot")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    columns = max(1, min(int(columns), len(images)))
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 1.8 * rows + 0.5),
                                squeeze=False)
    for number, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if number < len(images):
            axis.imshow(np.clip(images[number], 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)
            if titles is not None:
                axis.set_title(str(titles[number]), fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save(figure, path)


def _read_csv_columns(csv_path: PathLike) -> dict[str, np.ndarray]:
    """A CSV file as dict column -> float64 array (empty or unparsable cells -> NaN)."""
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        fieldnames = [name.strip() for name in (reader.fieldnames or [])]
        rows = list(reader)

    def number(text: str | None) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {name: np.array([number(row.get(raw)) for row in rows], dtype=np.float64)
            for name, raw in zip(fieldnames, reader.fieldnames or [])}


def plot_loss_curves(csv_path: PathLike, path: PathLike, columns: Sequence[str] | None = None
                     ) -> pathlib.Path:
    """Training curves from a Keras CSVLogger file, on a linear and a log y-scale.

    Each training column is a solid line and its "val_" counterpart, if logged, a dashed line
    of the same colour.

    Args:
        csv_path: the CSV with an "epoch" column and one column per metric.
        path: the PNG to write.
        columns: the training columns to plot; by default every column whose name contains
            "loss" and does not start with "val_".

    Returns:
        `path`.

    Raises:
        ValueError: if there is nothing to plot.
    """
    plt = pyplot()
    data = _read_csv_columns(csv_path)
    if columns is None:
        columns = [name for name in data if "loss" in name and not name.startswith("val_")]
        if not columns:  # only validation losses logged
            columns = [name for name in data if "loss" in name]
    missing = [name for name in columns if name not in data]
    if missing:
        raise ValueError(f"columns {missing} not in {csv_path} (has {list(data)})")
    if not columns:
        raise ValueError(f"no loss columns in {csv_path} (has {list(data)})")
    length = len(next(iter(data.values())))
    epochs = data["epoch"] if "epoch" in data else np.arange(length, dtype=np.float64)
    figure, (linear, logarithmic) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, name in enumerate(columns):
        colour = colours[number % len(colours)]
        series = [(name, data[name], "-")]
        validation = "val_" + name
        if validation in data and validation not in columns:
            series.append((validation, data[validation], "--"))
        for label, values, style in series:
            positive = np.where(values > 0, values, np.nan)
            linear.plot(epochs, values, style, color=colour, label=label, marker=".")
            logarithmic.plot(epochs, positive, style, color=colour, label=label, marker=".")
    logarithmic.set_yscale("log")
    for axes, scale in ((linear, "linear"), (logarithmic, "log")):
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        axes.set_title(f"Loss curves ({scale} scale)")
        axes.grid(True, alpha=0.3, which="both" if scale == "log" else "major")
        axes.legend(fontsize=8)
    # Fixed margins: tight_layout measured every tick label, 0.3 s of a 0.8 s figure (profiled).
    figure.subplots_adjust(left=0.07, right=0.985, bottom=0.12, top=0.93, wspace=0.18)
    return save(figure, path)


def make_gif(frame_paths: Sequence[PathLike], path: PathLike, duration_ms: int = 400
             ) -> pathlib.Path:
    """An animated GIF (looping forever) from image frames, e.g. PNGs saved during training.

    Frames are converted to RGB and resized to the first frame's size if they differ. Note
    that Pillow merges consecutive identical frames into one longer frame.

    Args:
        frame_paths: paths of the frames, in order.
        path: the GIF to write.
        duration_ms: display time of each frame in milliseconds.

    Returns:
        `path`.
    """
    from PIL import Image

    frame_paths = list(frame_paths)
    if not frame_paths:
        raise ValueError("no frames for the GIF")
    frames = []
    for frame_path in frame_paths:
        with Image.open(frame_path) as frame:
            frame = frame.convert("RGB")
            if frames and frame.size != frames[0].size:
                frame = frame.resize(frames[0].size)
            frames.append(frame)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(duration_ms),
                   loop=0)
    return path


def plot_reconstructions(originals: ArrayLike, reconstructions: ArrayLike,
                         ssim_values: ArrayLike, path: PathLike) -> pathlib.Path:
    """Two rows: originals above their reconstructions, SSIM in each title."""
    plt = pyplot()
    count = len(originals)
    figure, axes = plt.subplots(2, count, figsize=(1.8 * count, 4.3), squeeze=False)
    for column in range(count):
        axes[0, column].imshow(originals[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[1, column].imshow(reconstructions[column, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[1, column].text(0.5, -0.04, f"SSIM {ssim_values[column]:.3f}", fontsize=9,
                             ha="center", va="top", transform=axes[1, column].transAxes)
        for row in range(2):
            axes[row, column].axis("off")
    figure.suptitle("Test slices (top) and their VQ-VAE reconstructions (bottom)")
    figure.tight_layout()
    return save(figure, path)


def volume_planes(stack: np.ndarray, pixel: float, spacing: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The middle axial, coronal and sagittal planes of upright axial slices [S, H, W] (bottom
    first), upright (superior at the top, anterior on the left of the sagittal plane), with the
    height in mm of a coronal/sagittal pixel: (axial [H, W], coronal [S, W], sagittal [S, H],
    aspect) where `aspect` = spacing / pixel is the displayed height of a reslice row."""
    stack = np.asarray(stack)
    count, height, width = stack.shape
    axial = stack[count // 2]
    coronal = stack[::-1, height // 2, :]  # rows: superior first; columns: the subject's R on R
    sagittal = stack[::-1, :, width // 2]  # rows: superior first; columns: anterior first
    return axial, coronal, sagittal, spacing / pixel


def plot_volume_planes(stacks: Sequence[np.ndarray], path: PathLike, pixel: float,
                       spacing: float, titles: Sequence[str] | None = None,
                       title: str | None = None) -> pathlib.Path:
    """One row per volume: its middle axial, coronal and sagittal planes (`volume_planes`), at
    their physical aspect. Returns `path`."""
    plt = pyplot()
    rows = len(stacks)
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.6 * rows + 0.4), squeeze=False)
    for row, stack in enumerate(stacks):
        axial, coronal, sagittal, aspect = volume_planes(stack, pixel, spacing)
        for column, (plane, plane_aspect, name) in enumerate(
                ((axial, 1.0, "axial"), (coronal, aspect, "coronal"),
                 (sagittal, aspect, "sagittal"))):
            axis = axes[row, column]
            axis.imshow(plane, cmap="gray", vmin=0.0, vmax=1.0, aspect=plane_aspect,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save(figure, path)


def plot_overlaid_histograms(groups: Mapping[str, ArrayLike], path: PathLike, xlabel: str,
                             title: str = "") -> pathlib.Path:
    """Histograms of several groups of values ({label: [N] values}) on shared bins, each with its
    mean marked. Returns `path`."""
    plt = pyplot()
    finite = {label: np.asarray(values, np.float64)[np.isfinite(values)]
              for label, values in groups.items()}
    pooled = np.concatenate([values for values in finite.values()] or [np.zeros(1)])
    bins = np.linspace(pooled.min(), pooled.max() + 1e-9, 31)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for (label, values), colour in zip(finite.items(), ("tab:blue", "tab:orange", "tab:green")):
        if values.size:
            axes.hist(values, bins=bins, alpha=0.55, color=colour, density=True,
                      label=f"{label} (mean {values.mean():.3f})")
            axes.axvline(values.mean(), color=colour, linewidth=2)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return save(figure, path)
