"""Seconds to draw one whole volume: the first slice from the slice prior, each next one from
the volume prior given the one below, then decoded; untrained models of the run's architecture
(the time does not depend on the weights)."""
from __future__ import annotations

import argparse
import time
from typing import Any

import keras

from brainvq import config
from brainvq.benchmarks.harness import comma_separated, machine_description
from brainvq.generation import stacks
from brainvq.models import build


def run(args: argparse.Namespace) -> Any:
    """Prints the time of one volume of --slices-per-volume slices, compile included, then
    warm, for each --volumes count sampled together."""
    values = config.resolve(args)
    values["num_slice_positions"] = values["slices_per_volume"]
    keras.utils.set_random_seed(0)
    vqvae = build.vqvae_from_hyperparameters(values)
    prior = build.prior_from_hyperparameters(values, vqvae.grid_size)
    volume_prior = build.volume_prior_from_hyperparameters(values, vqvae.grid_size)
    length, size = values["slices_per_volume"], values["image_size"]
    print(f"machine: {machine_description()}")
    print(f"{size}x{size}x{length} volumes ({vqvae.grid_size}x{vqvae.grid_size} code grids), "
          f"temperature {values['temperature']}, top-k {values['top_k']}, backend "
          f"{keras.backend.backend()}")
    for number, count in enumerate(args.counts):
        for label in ("first call (compiles)", "again") if number == 0 else ("again",):
            start = time.perf_counter()
            codes = stacks.sample_stack_codes(prior, volume_prior, count, vqvae.grid_size,
                                              length, temperature=values["temperature"],
                                              top_k=values["top_k"], seed=number)
            stacks.decode_stacks(vqvae, codes)
            seconds = time.perf_counter() - start
            print(f"  {count} volume(s) together, {label}: {seconds:.1f} s, "
                  f"{seconds / count:.1f} s per volume")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    parser = commands.add_parser("volume-speed",
                                 help="seconds per whole sampled volume (untrained models)")
    parser.add_argument("--counts", type=comma_separated(int),
                        default=[1, 4], help="volumes sampled together (default: 1,4)")
    config.add_arguments(parser)
    parser.set_defaults(run=run)
