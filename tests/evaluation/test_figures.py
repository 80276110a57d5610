"""Tests of the figures (figures.py): each plot writes a PNG; the GIF has every frame."""
import csv

import numpy as np
import pytest
from PIL import Image

from brainvq.evaluation import metrics
from brainvq.output import figures
from helpers import smooth_image


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_plots_write_png_files(tmp_path):
    rng = np.random.default_rng(14)
    references = np.stack([smooth_image(seed, size=32) for seed in range(10)])[..., None]
    reconstructions = np.clip(references + 0.05 * rng.normal(size=references.shape), 0, 1)
    ssim_values = np.array([metrics.ssim(a, b) for a, b in zip(references, reconstructions)])
    slice_index = np.arange(10) % 3

    outputs = [
        figures.plot_ssim_histogram(ssim_values, tmp_path / "hist.png"),
        figures.plot_metric_by_slice(slice_index, ssim_values, tmp_path / "by_slice.png"),
        figures.plot_best_worst(references, reconstructions, ssim_values,
                                tmp_path / "best_worst.png", count=3),
        figures.plot_best_worst(references[:4], reconstructions[:4], ssim_values[:4],
                                tmp_path / "few.png", count=3),
        figures.plot_image_grid(references, tmp_path / "grid.png", columns=4,
                                titles=[f"#{n}" for n in range(10)], title="grid"),
    ]
    for output in outputs:
        assert_png(output)


def test_plot_loss_curves_reads_a_csv_logger_file(tmp_path):
    csv_path = tmp_path / "log.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "reconstruction_loss", "perplexity", "val_loss",
                         "val_reconstruction_loss"])
        for epoch in range(6):
            writer.writerow([epoch, 1.0 / (epoch + 1), 0.5 / (epoch + 1), 100 + epoch,
                             1.1 / (epoch + 1), 0.6 / (epoch + 1)])
    assert_png(figures.plot_loss_curves(csv_path, tmp_path / "loss.png"))
    assert_png(figures.plot_loss_curves(csv_path, tmp_path / "perplexity.png",
                                        columns=["perplexity"]))
    with pytest.raises(ValueError):
        figures.plot_loss_curves(csv_path, tmp_path / "bad.png", columns=["missing"])


def test_make_gif_has_every_frame(tmp_path):
    frames = []
    for number in range(4):
        frame = tmp_path / f"frame_{number}.png"
        pixels = np.full((16, 16), 60 * number, dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(frame)
        frames.append(frame)
    gif = figures.make_gif(frames, tmp_path / "anim.gif", duration_ms=100)
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.n_frames == 4
