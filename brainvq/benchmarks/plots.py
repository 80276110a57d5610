"""The benchmarks' figures: SSIM against the number of training subjects (`learning_curve`)
and against code bits per image (`rate_distortion`); what synthetic slices add to a model
trained on real ones (`utility_curve`)."""
from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from brainvq.hints import PathLike
from brainvq.output import figures


def learning_curve(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = ""
                   ) -> pathlib.Path:
    """Held-out and training-subject SSIM against the number of training subjects.

    Args:
        rows: dicts with "subjects", "train_ssim", "test_ssim", "test_ssim_std" and
            "test_brain_ssim" (benchmark.py learning-curve).
        path: the PNG to write.
        title: a line under the figure's title (e.g. the budget).

    Returns:
        `path`.
    """
    plt = figures.pyplot()
    subjects = np.array([row["subjects"] for row in rows], dtype=np.float64)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    axes.plot(subjects, [row["train_ssim"] for row in rows], "o--", color="tab:gray",
              label="training subjects")
    axes.errorbar(subjects, [row["test_ssim"] for row in rows],
                  yerr=[row["test_ssim_std"] for row in rows], fmt="o-", color="tab:blue",
                  capsize=3, label="held-out test subjects (± std)")
    axes.plot(subjects, [row["test_brain_ssim"] for row in rows], "s-", color="tab:orange",
              label="held-out, inside the brain")
    axes.set_xscale("log")
    axes.set_xticks(subjects)
    axes.set_xticklabels([str(int(count)) for count in subjects])
    axes.set_xlabel("training subjects")
    axes.set_ylabel("mean SSIM of reconstructions")
    axes.set_title("VQ-VAE reconstructions against training-set size"
                   + (f"\n{title}" if title else ""))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figures.save(figure, path)


def rate_distortion(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = ""
                    ) -> pathlib.Path:
    """Held-out SSIM (left) and brain SSIM (right) against code bits per image, one marker
    per design: the designs compared with ("baseline") grey, our single level blue, VQ-VAE-2
    green, each family's points joined by a line (its curve); hollow markers with the
    adversarial loss. One legend below names every design.

    Args:
        rows: dicts with "label", "bits", "test_ssim", "test_ssim_std", "test_brain_ssim",
            "levels", "adversarial" and "baseline" (benchmark.py rate-distortion).
        path: the PNG to write.
        title: a line under the figure's title (e.g. the budget and data).

    Returns:
        `path`.
    """
    plt = figures.pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(11, 5.2))
    fewest, most = min(row["bits"] for row in rows), max(row["bits"] for row in rows)
    ticks = [2 ** power for power in range(6, 16) if fewest / 2 <= 2 ** power <= most * 2]
    markers = iter("osD^vP*Xhp<>" * 4)
    marker_of = {row["label"]: next(markers) for row in rows}
    # our curves: one per (levels, adversarial) family with two points or more, by rate
    curves = {}
    for row in sorted(rows, key=lambda row: row["bits"]):
        if not row["baseline"]:
            curves.setdefault((row["levels"], row["adversarial"]), []).append(row)
    for axes, key, name in ((panels[0], "test_ssim", "mean SSIM"),
                            (panels[1], "test_brain_ssim", "mean brain SSIM")):
        for (levels, adversarial), members in curves.items():
            if len(members) > 1:
                axes.plot([row["bits"] for row in members], [row[key] for row in members],
                          color="tab:green" if levels == 2 else "tab:blue",
                          linestyle=":" if adversarial else "-", alpha=0.5)
        for row in rows:
            color = ("tab:gray" if row["baseline"]
                     else "tab:green" if row["levels"] == 2 else "tab:blue")
            axes.errorbar(row["bits"], row[key],
                          yerr=row["test_ssim_std"] if key == "test_ssim" else None,
                          fmt=marker_of[row["label"]], color=color, capsize=3, markersize=7,
                          markerfacecolor="white" if row["adversarial"] else color,
                          label=row["label"])
        axes.set_xscale("log")
        axes.set_xticks(ticks, [f"{tick:,}" for tick in ticks])
        axes.minorticks_off()
        axes.set_xlim(fewest / 1.5, most * 1.5)
        axes.set_xlabel("code bits per image")
        axes.set_ylabel(f"{name} of held-out reconstructions")
        axes.grid(alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8,
                  frameon=False)
    figure.suptitle("Rate and distortion on held-out subjects" + (f"\n{title}" if title else ""))
    figure.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 3), 1, 1))
    return figures.save(figure, path)


def utility_curve(summary: Mapping[str, Any], subjects: Sequence[int], multiple: int,
                  path: PathLike, title: str = "", split: str = "validate") -> pathlib.Path:
    """`benchmark.py utility`'s figures on the real `split` slices against the number of real
    training subjects, one panel per figure: real slices alone and real plus synthetic (mean ±
    sd over seeds), synthetic alone and the shuffled control as horizontal lines.

    Args:
        summary: `benchmarks.utility.summarise`'s {set name: {split: {"mean", "sd"}}}.
        subjects: the real subject counts (x axis).
        multiple: the synthetic multiple mixed with the real slices.
        path: the PNG to write.
        title: a line under the figure's title.

    Returns:
        `path`.
    """
    plt = figures.pyplot()
    metrics = list(next(iter(summary.values()))[split]["mean"])
    figure, panels = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.8),
                                  squeeze=False)
    for axes, metric in zip(panels[0], metrics):
        for label, name, style in (("real alone", "real {}", "o-"),
                                   (f"real + synthetic x{multiple}",
                                    "real {} + synthetic x%d" % multiple, "s-")):
            points = [(count, summary[name.format(count)][split])
                      for count in subjects if name.format(count) in summary]
            if points:
                axes.errorbar([count for count, _ in points],
                              [entry["mean"][metric] for _, entry in points],
                              yerr=[entry["sd"][metric] for _, entry in points], fmt=style,
                              capsize=3, label=label)
        for name, style, color in ((f"synthetic x{multiple}", "--", "tab:green"),
                                   (f"synthetic x{multiple}, labels shuffled", ":",
                                    "tab:gray")):
            if name in summary:
                axes.axhline(summary[name][split]["mean"][metric], linestyle=style,
                             color=color, label=f"{name} (no real)")
        axes.set_xscale("log")
        axes.set_xticks(subjects)
        axes.set_xticklabels([str(count) for count in subjects])
        axes.set_xlabel("real training subjects")
        axes.set_title(metric)
        axes.grid(alpha=0.3)
    panels[0][0].legend(fontsize=7, loc="best")
    figure.suptitle(f"A model trained on real and synthetic slices, judged on real {split} "
                    f"slices" + (f"\n{title}" if title else ""), fontsize=10)
    figure.tight_layout()
    return figures.save(figure, path)
