"""Training and reconstruction images per second, ours against a keras-io-sized VQ-VAE."""
from __future__ import annotations

import argparse
from typing import Any

import keras
import numpy as np

from brainvq import config
from brainvq.benchmarks.harness import machine_description, quality_model, timed


def run(args: argparse.Namespace) -> Any:
    """Training and reconstruction images/s of our VQ-VAE and a keras-io-sized one."""
    values = config.resolve(args)
    size, batch = values["image_size"], values["batch_size"]
    images = np.random.RandomState(0).rand(args.images, size, size, 1).astype("float32")
    print(f"machine: {machine_description()}")
    print(f"{args.images} random {size}x{size} images, batch {batch}, best of {args.repeats}")
    rates = {}
    for baseline in (None, "kerasio"):
        keras.utils.set_random_seed(0)
        model = quality_model(values, baseline)
        model.fit(images[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # compile
        model.predict(images[:batch], batch_size=batch, verbose=0)
        train_seconds, _ = timed(lambda model=model: model.fit(images, batch_size=batch,
                                                                epochs=1, verbose=0), args.repeats)
        predict_seconds, _ = timed(lambda model=model: model.predict(images, batch_size=batch,
                                                                     verbose=0), args.repeats)
        name = "keras-io design" if baseline else "ours"
        rates[name] = (args.images / train_seconds, args.images / predict_seconds)
        print(f"{name:>16}: {model.count_params():>10,} parameters, "
              f"train {rates[name][0]:8.1f} images/s, reconstruct {rates[name][1]:8.1f} images/s")
    print(f"ratio ours / keras-io: train {rates['ours'][0] / rates['keras-io design'][0]:.2f}x, "
          f"reconstruct {rates['ours'][1] / rates['keras-io design'][1]:.2f}x")
    return rates


def add_parser(commands: argparse._SubParsersAction) -> None:
    """This benchmark's subcommand of benchmark.py."""
    throughput_parser = commands.add_parser(
        "throughput", help="training and reconstruction images/s, ours vs keras-io sized")
    throughput_parser.add_argument("--images", type=int, default=256)
    throughput_parser.add_argument("--repeats", type=int, default=2)
    config.add_arguments(throughput_parser)
    throughput_parser.set_defaults(run=run)
