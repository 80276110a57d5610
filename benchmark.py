"""Timings of the pipeline's hot spots, one subcommand each.

    python benchmark.py sampling                      # compiled sampler vs the keras-io loop
    python benchmark.py sampling --grid-size 16 --samples 8 --repeats 3

Models are untrained (random weights): the timings do not depend on what the weights are.
Figures are printed; nothing is asserted.
"""
import argparse
import os
import platform
import time


def machine_description():
    """One line about where the numbers come from: platform, CPUs, backend, accelerators."""
    import keras

    backend = keras.backend.backend()
    accelerators = "none"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        accelerators = ", ".join(device.name for device in gpus) or "none"
        backend = f"tensorflow {tf.__version__}"
    elif backend == "jax":
        import jax

        accelerators = ", ".join(str(device) for device in jax.devices()
                                 if device.platform != "cpu") or "none"
        backend = f"jax {jax.__version__}"
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"keras {keras.__version__} on {backend}, accelerators: {accelerators}")


def _timed(function, repeats):
    """Best wall time of `repeats` calls of `function`, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def benchmark_sampling(args):
    """Compiled `sample_codes` vs the keras-io style `sample_codes_naive` on one prior."""
    import keras

    import modules
    import sampling

    keras.utils.set_random_seed(args.seed)
    prior = modules.GatedPixelCNN(num_codes=args.num_codes, grid_size=args.grid_size,
                                  filters=args.filters, num_layers=args.layers,
                                  kernel_size=args.kernel_size, dropout=0.0,
                                  num_slice_positions=32)
    prior.build()
    g, n = args.grid_size, args.samples
    print(f"machine: {machine_description()}")
    print(f"prior: grid {g}x{g}, K={args.num_codes}, filters {args.filters}, "
          f"{args.layers}+1 gated layers, kernel {args.kernel_size}; {n} samples, "
          f"{g * g} positions; best of {args.repeats}")

    def compiled(crop):
        return lambda: sampling.sample_codes(prior, n, g, slice_index=3, seed=args.seed,
                                             crop=crop)

    def naive():
        return sampling.sample_codes_naive(prior, n, g, slice_index=3, seed=args.seed)

    candidates = [("compiled, causal window", compiled(True))]
    if args.whole_grid:
        candidates.append(("compiled, whole grid", compiled(False)))
    rates = {}
    for name, function in candidates:
        start = time.perf_counter()
        function()  # warm-up: traces and compiles (one full sampling run)
        warm_up = time.perf_counter() - start
        seconds, _ = _timed(function, args.repeats)
        rates[name] = n / seconds
        print(f"{name:>26}: {seconds:8.2f} s  {n / seconds:9.3f} samples/s  "
              f"({1000 * seconds / (g * g):.2f} ms/position; first call incl. compile "
              f"{warm_up:.2f} s)")
    if not args.skip_naive:
        import numpy as np

        start = time.perf_counter()  # warm-up: builds the predict function
        prior.predict({"code_indices": np.zeros((n, g, g), "int32"),
                       "slice_index": np.zeros((n,), "int32")}, batch_size=n, verbose=0)
        warm_up = time.perf_counter() - start
        seconds, _ = _timed(naive, args.repeats)
        rates["naive"] = n / seconds
        print(f"{'naive (predict per position)':>26}: {seconds:8.2f} s  {n / seconds:9.3f} "
              f"samples/s  ({1000 * seconds / (g * g):.2f} ms/position; warm-up predict "
              f"{warm_up:.2f} s)")
        for name in rates:
            if name != "naive":
                print(f"speed-up of {name} over naive: {rates[name] / rates['naive']:.1f}x")
    if keras.backend.backend() == "tensorflow":
        print(f"XLA (jit_compile) used by the compiled sampler: {sampling._xla_works()}")
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

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
                                 help="also time the compiled sampler without the causal "
                                      "window (the prior on the whole grid at every step)")
    sampling_parser.add_argument("--skip-naive", action="store_true",
                                 help="do not time the naive loop (slow on big grids)")
    sampling_parser.set_defaults(run=benchmark_sampling)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    main()
