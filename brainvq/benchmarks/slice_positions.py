"""A figure of chosen slice positions of NIfTI volumes, one row per volume."""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from brainvq import config
from brainvq.benchmarks.harness import comma_separated
from brainvq.data import volumes
from brainvq.data.slice_sets import square_resize
from brainvq.output import figures


def run(args: argparse.Namespace) -> Any:
    """A figure of the slices at chosen positions, one row per volume (the slice range's check)."""
    positions = args.positions
    images, titles = [], []
    for path in args.volumes:
        volume = volumes.read_volume(path)
        cut = volumes.cut_slices(volume, args.slices_per_volume)
        cut_positions = cut.fractions * (args.slices_per_volume - 1)
        name = os.path.basename(path).split("_")[0].split(".")[0]
        for position in positions:
            nearest = int(np.argmin(np.abs(cut_positions - position)))
            images.append(square_resize(cut.images[nearest], args.image_size))
            titles.append(f"{name}, position {position}")
        print(f"{path}: {len(cut.images)} distinct axial slices, {volume.spacing:g} mm apart, "
              f"axial indices {cut.indices[0]}..{cut.indices[-1]} of {volume.voxels.shape[2]}")
    figures.plot_image_grid(np.stack(images), args.figure, columns=len(positions),
                            titles=titles, title="The same slice positions on each volume")
    print(f"wrote {args.figure}")
    return args.figure


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    positions_parser = commands.add_parser(
        "slice-positions", help="a figure of chosen slice positions of NIfTI volumes, one row "
                                "per volume (does one position show one level of the brain?)")
    positions_parser.add_argument("volumes", nargs="+", help="NIfTI volumes, one row each")
    positions_parser.add_argument("--positions", default=[0, 8, 16, 24, 31],
                                  type=comma_separated(int))
    positions_parser.add_argument("--slices-per-volume", type=int,
                                  default=config.DEFAULTS["slices_per_volume"])
    positions_parser.add_argument("--image-size", type=int, default=128)
    positions_parser.add_argument("--figure", default="images/slice_positions.png")
    positions_parser.set_defaults(run=run)
