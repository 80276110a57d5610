"""Three validation heads as `volume_vqvae.py --judge` gave them back, beside the real ones: an
axial, a coronal and a sagittal plane of each, one row per model (real first).

    PYTHONPATH=. python docs/experiments/given_back_figure.py --names slice4 slice2 \
        --output docs/images/volume-vqvae-slice2-given-back.png
"""
import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("output/volume-vqvae"))
    parser.add_argument("--names", nargs="+", required=True,
                        help="judged models under --root (each with validate_given_back.npy)")
    parser.add_argument("--settings", default="pretrained/ixi-t1-128-volumes/hyperparameters.json",
                        help="the stacks' slice spacing and field of view (the planes' aspect)")
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    settings = json.loads(pathlib.Path(args.settings).read_text())
    aspect = settings["slice_spacing"] / (settings["field_of_view"] / settings["image_size"])
    with np.load(args.root / "stacks.npz") as stacks:
        rows = [("real", stacks["validate"][:args.heads].astype(np.float32))]
    for name in args.names:
        given_back = np.load(args.root / name / "validate_given_back.npy")
        rows.append((name, given_back[:args.heads].astype(np.float32)))
    figure, axes = plt.subplots(len(rows), 3 * args.heads,
                                figsize=(2 * 3 * args.heads, 2.2 * len(rows)), squeeze=False)
    for row, (name, heads) in enumerate(rows):
        for number, head in enumerate(heads):
            depth, height, width = head.shape
            planes = (head[depth * 5 // 8], head[:, height // 2][::-1],
                      head[:, :, width // 2][::-1])
            for column, plane in enumerate(planes):
                axis = axes[row, 3 * number + column]
                axis.imshow(plane, cmap="gray", vmin=0, vmax=1,
                            aspect=1 if column == 0 else aspect)
                axis.axis("off")
        axes[row, 0].set_title(name, loc="left", fontsize=10)
    figure.tight_layout()
    figure.savefig(args.output, dpi=60)
    print(f"figure: {args.output}")


if __name__ == "__main__":
    main()
