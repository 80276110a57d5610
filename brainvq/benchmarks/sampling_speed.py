"""The compiled sampler against the keras-io style loop, in samples per second."""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import keras
import numpy as np

from brainvq import config
from brainvq.benchmarks.harness import machine_description, timed
from brainvq.generation import sampling, sampling_loops
from brainvq.models.pixelcnn import GatedPixelCNN


def run(args: argparse.Namespace) -> Any:
    """Compiled `sample_codes` vs the keras-io style `sample_codes_naive` on one prior."""
    keras.utils.set_random_seed(args.seed)
    prior = GatedPixelCNN(num_codes=args.num_codes, grid_size=args.grid_size,
                          filters=args.filters, num_layers=args.layers,
                          kernel_size=args.kernel_size, dropout=0.0,
                          attention_blocks=args.attention_blocks,
                          attention_heads=args.attention_heads,
                          position_embedding=args.position_embedding)
    prior.build()
    g, n = args.grid_size, args.samples
    print(f"machine: {machine_description()}")
    print(f"prior: grid {g}x{g}, K={args.num_codes}, filters {args.filters}, "
          f"{args.layers}+1 gated layers, kernel {args.kernel_size}, "
          f"{args.attention_blocks} attention blocks, position embedding "
          f"{args.position_embedding}; {n} samples, {g * g} positions; best of {args.repeats}")

    def compiled(crop: bool) -> Callable[[], np.ndarray]:
        return lambda: sampling.sample_codes(prior, n, g, slice_index=3, seed=args.seed,
                                             crop=crop)

    def naive() -> np.ndarray:
        return sampling.sample_codes_naive(prior, n, g, slice_index=3, seed=args.seed)

    candidates = [("compiled, row-cached", compiled(True))]
    if args.whole_grid:
        candidates.append(("compiled, whole grid", compiled(False)))
    rates = {}
    for name, function in candidates:
        start = time.perf_counter()
        function()  # warm-up: traces and compiles (one full sampling run)
        warm_up = time.perf_counter() - start
        seconds, _ = timed(function, args.repeats)
        rates[name] = n / seconds
        print(f"{name:>26}: {seconds:8.2f} s  {n / seconds:9.3f} samples/s  "
              f"({1000 * seconds / (g * g):.2f} ms/position; first call incl. compile "
              f"{warm_up:.2f} s)")
    if not args.skip_naive:
        inputs = {"code_indices": np.zeros((n, g, g), "int32"),
                  "slice_index": np.zeros((n,), "int32")}
        start = time.perf_counter()  # warm-up: builds the predict function
        prior.predict(inputs, batch_size=n, verbose=0)
        warm_up = time.perf_counter() - start
        if args.naive_positions:
            # The naive loop makes one whole-grid `predict` call per position, each the same
            # work: time `naive_positions` of them and scale to all g*g positions.
            start = time.perf_counter()
            for _ in range(args.naive_positions):
                prior.predict(inputs, batch_size=n, verbose=0)
            seconds = (time.perf_counter() - start) / args.naive_positions * g * g
            label = f"naive, est. from {args.naive_positions}"
        else:
            seconds, _ = timed(naive, args.repeats)
            label = "naive (predict per position)"
        rates["naive"] = n / seconds
        print(f"{label:>26}: {seconds:8.2f} s  {n / seconds:9.3f} "
              f"samples/s  ({1000 * seconds / (g * g):.2f} ms/position; warm-up predict "
              f"{warm_up:.2f} s)")
        for name in rates:
            if name != "naive":
                print(f"speed-up of {name} over naive: {rates[name] / rates['naive']:.1f}x")
    if keras.backend.backend() == "tensorflow":
        print(f"XLA (jit_compile) used by the compiled sampler: {sampling_loops.xla_works()}")
    return rates


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    sampling_parser = commands.add_parser(
        "sampling", help="compiled sampler vs the keras-io style loop (samples/s)")
    sampling_parser.add_argument("--grid-size", type=int, default=32)
    sampling_parser.add_argument("--num-codes", type=int, default=512)
    sampling_parser.add_argument("--samples", type=int, default=16)
    sampling_parser.add_argument("--filters", type=int, default=96)
    sampling_parser.add_argument("--layers", type=int, default=6,
                                 help="type B gated layers after the first (default: 6)")
    sampling_parser.add_argument("--kernel-size", type=int, default=3)
    sampling_parser.add_argument("--repeats", type=int, default=1,
                                 help="timed runs of each sampler; the best is reported")
    sampling_parser.add_argument("--seed", type=int, default=0)
    sampling_parser.add_argument("--whole-grid", action="store_true",
                                 help="also time the compiled sampler without row caching "
                                      "(the prior on the whole grid at every step)")
    sampling_parser.add_argument("--skip-naive", action="store_true",
                                 help="do not time the naive loop (slow on big grids)")
    sampling_parser.add_argument("--naive-positions", type=config.non_negative_int,
                                 default=0,
                                 help="time only this many of the naive loop's per-position "
                                      "predict calls and scale to the whole grid (0: run it)")
    sampling_parser.add_argument("--attention-blocks", type=int,
                                 default=config.DEFAULTS["prior_attention_blocks"])
    sampling_parser.add_argument("--attention-heads", type=int,
                                 default=config.DEFAULTS["prior_attention_heads"])
    sampling_parser.add_argument("--position-embedding", type=config.parse_bool,
                                 default=config.DEFAULTS["prior_position_embedding"])
    sampling_parser.set_defaults(run=run)
