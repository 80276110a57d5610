"""Timings of the pipeline's hot spots, one subcommand each.

    python benchmark.py sampling                      # compiled sampler vs the keras-io loop
    python benchmark.py sampling --grid-size 16 --samples 8 --repeats 3
    python benchmark.py quality --data-dir /tmp/oasis_png --minutes 5
    python benchmark.py quality --data-dir /tmp/oasis_png --minutes 5 --baseline kerasio
    python benchmark.py throughput --image-size 128
    python benchmark.py learning-curve --data-dir ../shared/data/ixi --split 125,20,20 \
        --subjects 8,32,125 --minutes 10 --figure images/ixi_learning_curve.png
    python benchmark.py realism --output-dir runs/oasis --data-dir /tmp/oasis_png \
        --temperatures 0.8,0.9,1.0 --top-ks 0,64   # sampling defaults, on validation subjects
    python benchmark.py realism --output-dir pretrained/ixi-t1-128 --data-dir ../shared/data/ixi \
        --samples 256 --temperatures 1.0 --top-ks 64 --guidances 1.5 --seeds 0,1,2 \
        --feature-network-dir output/ixi-features   # several seeds, one shared feature network
    python benchmark.py rate-distortion --data-dir /tmp/oasis_png --steps 300 --points 8x,4x \
        --json part1.json                           # one budget per point; sweeps in parts:
    python benchmark.py rate-distortion --merge part1.json part2.json --figure rd.png
    python benchmark.py volume-speed --slices-per-volume 64   # seconds per 128x128x64 volume
    python benchmark.py volumes --output-dirs pretrained/ixi-t1-128-volumes,runs/volumes-age-sex \
        --data-dir ../shared/data/ixi --unconditional-covariates null,drawn --seeds 42,7,0 \
        --feature-network-dir output/volume-features   # runs' volumes in one feature space
    python benchmark.py rulers --output-dir runs/ixi-t1-128-age-sex --images-seen 60000,180000
    python benchmark.py covariate-guidance --output-dir runs/ixi-t1-128-age-sex \
        --covariate-guidances 1,1.5,2,3   # covariate guidance, on validation subjects
    python benchmark.py utility --output-dir pretrained/ixi-t1-128 --data-dir ../shared/data/ixi \
        --subjects 10,25,all --multiples 1,4 --seeds 0,1,2 --figure utility.png  # synthetic

`sampling`, `throughput` and `volume-speed` time untrained models (the timings do not depend
on the weights).
`quality` trains on the train and validate splits for a fixed wall-clock budget and reports
test-split quality, so two configurations can be compared on the same budget and the same bit
rate.
Figures are printed; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from brainvq import console
from brainvq.benchmarks import (
    covariate_guidance,
    learning_curve,
    quality,
    rate_distortion,
    realism_sweep,
    rulers,
    sampling_speed,
    slice_positions,
    throughput,
    utility,
    volume_realism,
    volume_speed,
)

SUBCOMMANDS = (sampling_speed, realism_sweep, quality, learning_curve, rate_distortion,
               throughput, slice_positions, volume_speed, volume_realism, rulers,
               covariate_guidance, utility)


def main(argv: Sequence[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    args = parser.parse_args(argv)
    console.quiet_start()
    from brainvq.runs import run_folder

    try:
        return args.run(args)
    except run_folder.script_errors() as failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    main()
