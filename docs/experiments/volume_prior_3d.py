"""Heads drawn from a 3D code (issue 52): priors over a `VolumeVQVAE`'s code grid, sampled and
judged on whole volumes.

A `VolumeVQVAE` (docs/experiments/volume_vqvae.py) codes a 64-slice head as s x 16 x 16 codes (s = 8
at 8x along the slices). Its code grid is drawn as the shipped volume model draws slice codes, one
16 x 16 layer at a time from the bottom up, but each layer now spans 64 / s slices and the decoder
renders all of them together: layer 0 from a `GatedPixelCNN` at position 0, layer k from a second
one given layer k - 1 (the shipped model's settings,
`pretrained/ixi-t1-128-volumes/hyperparameters.json`, with s positions and no covariates). Both
train on the 125 training subjects' code grids and their mirror images, the epoch with the lowest
validation NLL kept. `--prior stack` trains one `StackPixelCNN` instead
(brainvq/models/stack_prior.py): each layer given every layer below it (`--context-layers`), the
bottom one given none. The heads drawn (`--volumes` a seed, `--seeds`) are judged beside the 20
validation subjects' real stacks: the streak figures (`brainvq/evaluation/streaks.py`),
neighbouring-slice SSIM, the heads' volumes and their spread, the nearest training head (3D SSIM)
and the time a head takes. Run from the repository root:

    PYTHONPATH=. python docs/experiments/volume_prior_3d.py \
        --vqvae output/volume-vqvae/iso8/best.keras --name iso8 --epochs 40

`--decoder LABEL=FILE` (repeatable) renders the same drawn codes, and the validation codes, with
another `VolumeVQVAE` of the same encoder and codebook as well (a decoder fine-tuned by
`volume_vqvae.py --tune-from`), its rows labelled. Writes `output/volume-prior-3d/<name>/` (the
codes, both priors, their logs and `judged.json`). `--realism --data-dir DIR` also judges each
seed's heads as `benchmark.py volumes` judges a run's (`volume_checks.volume_report`: the
coronal and sagittal reslices' and the axial slices' plausibility, Fréchet distance, precision
and recall in feature networks trained on the training subjects, kept in
`--feature-network-dir`), beside the validation subjects' real heads; `realism.json`.
"""
import argparse
import json
import pathlib
import time

import keras
import numpy as np

from brainvq.benchmarks import volume_realism
from brainvq.data import input_pipeline, layouts
from brainvq.evaluation import streaks, volume_checks
from brainvq.generation.stacks import (
    decode_volumes,
    encode_volumes,
    sample_stack_codes,
    sample_stack_codes_given_below,
)
from brainvq.models import build, stack_prior
from brainvq.output import figures as plots
from brainvq.runs import run_folder
from brainvq.training import stages
from brainvq.training.volume_stage import pair_dataset


def load_codes(args, vqvae, stacks):
    cache = args.work / "codes.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {name: stored[name] for name in stored.files}
    codes = {"train": np.concatenate([encode_volumes(vqvae, stacks["train"]),
                                      encode_volumes(vqvae, stacks["train"], mirrored=True)]),
             "validate": encode_volumes(vqvae, stacks["validate"])}
    np.savez(cache, **codes)
    return codes


def prior_values(args, num_codes, layers):
    values = json.loads(pathlib.Path(args.settings).read_text())
    return dict(values, num_codes=num_codes, num_slice_positions=layers, condition_on="",
                prior_pose_condition=False, prior_augment_condition=False,
                prior_augment_copies=0, prior_epochs=args.epochs)


def layer_data(codes, batch_size, shuffle, seed=0):
    """Each code layer as a grid at its position: for the prior of layer 0 (trained on all)."""
    count, layers = codes.shape[:2]
    grids = codes.reshape((count * layers,) + codes.shape[2:])
    positions = np.tile(np.arange(layers, dtype=np.int32), count)
    return input_pipeline.batches(((grids, positions), grids), batch_size, shuffle, seed=seed,
                                  repeat=shuffle)


def pairs(codes):
    """(layers, positions, layers below, None) for the layered prior."""
    count, layers = codes.shape[:2]
    return (codes[:, 1:].reshape((-1,) + codes.shape[2:]),
            np.tile(np.arange(1, layers, dtype=np.int32), count),
            codes[:, :-1].reshape((-1,) + codes.shape[2:]), None)


def fit(model, name, train, validate, steps, args):
    path = args.work / f"{name}.keras"
    if path.is_file() and not args.retrain:
        return keras.saving.load_model(path)
    model.fit(train, validation_data=validate, epochs=args.epochs, steps_per_epoch=steps,
              verbose=2, callbacks=[
                  keras.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True),
                  keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience),
                  keras.callbacks.CSVLogger(args.work / f"{name}_log.csv")])
    return keras.saving.load_model(path)


def train_priors(args, codes, num_codes):
    layers, grid = codes["train"].shape[1], codes["train"].shape[2]
    values = prior_values(args, num_codes, layers)
    keras.utils.set_random_seed(args.seed)
    prior = stages.compile_prior(build.prior_from_hyperparameters(values, grid), values)
    batch = values["prior_batch_size"]
    count = codes["train"].shape[0] * layers
    prior = fit(prior, "prior", layer_data(codes["train"], batch, True, args.seed),
                layer_data(codes["validate"], batch, False), -(-count // batch), args)
    volume_prior = stages.compile_prior(
        build.volume_prior_from_hyperparameters(values, grid), values)
    train_pairs = pairs(codes["train"])
    volume_prior = fit(volume_prior, "layer_prior",
                       pair_dataset(train_pairs, batch, True, seed=args.seed, repeat=True),
                       pair_dataset(pairs(codes["validate"]), batch, False),
                       -(-len(train_pairs[0]) // batch), args)
    return values, prior, volume_prior


def train_stack_prior(args, codes, num_codes):
    """`--prior stack`: one `StackPixelCNN` drawing every layer given the layers below it."""
    layers, grid = codes["train"].shape[1], codes["train"].shape[2]
    values = prior_values(args, num_codes, layers)
    keras.utils.set_random_seed(args.seed)
    context = args.context_layers or layers - 1
    prior = stages.compile_prior(
        build.stack_prior_from_hyperparameters(values, grid, context), values)
    batch = values["prior_batch_size"]

    def examples(split, shuffle):
        layer, depth, below = stack_prior.stack_examples(codes[split], context, num_codes)
        return pair_dataset((layer, depth, below, None), batch, shuffle, seed=args.seed,
                            repeat=shuffle)

    count = codes["train"].shape[0] * layers
    return fit(prior, "stack_prior", examples("train", True), examples("validate", False),
               -(-count // batch), args)


def draw(args, priors, count, layers, grid, seed):
    """Code stacks [count, layers, g, g] from the priors `--prior` trained."""
    if args.prior == "stack":
        return sample_stack_codes_given_below(priors, count, layers,
                                              temperature=args.temperature, top_k=args.top_k,
                                              seed=seed)
    prior, volume_prior = priors
    return sample_stack_codes(prior, volume_prior, count, grid, layers,
                              temperature=args.temperature, top_k=args.top_k, seed=seed)


def figures(stacks, training, pixel, spacing):
    """The volume checks of a set of stacks [V, S, H, W] (pixels `pixel` mm wide, slices
    `spacing` mm apart)."""
    row = streaks.stack_figures(stacks)
    row["neighbour_ssim"] = float(np.mean([volume_checks.neighbour_ssim(s).mean()
                                           for s in stacks]))
    volumes = volume_checks.head_volumes(stacks, pixel, spacing)
    row["head_ml"], row["head_ml_sd"] = float(volumes.mean()), float(volumes.std())
    nearest = streaks.nearest_volume_ssim(list(stacks), list(training))
    row["nearest_training_ssim_max"] = float(np.nanmax(nearest))
    row["nearest_training_ssim_mean"] = float(np.nanmean(nearest))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vqvae", required=True, help="a VolumeVQVAE's .keras file")
    parser.add_argument("--stacks", default="output/volume-vqvae/stacks.npz",
                        help="the stacks volume_vqvae.py cached")
    parser.add_argument("--settings", default="pretrained/ixi-t1-128-volumes/hyperparameters.json")
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path("output/volume-prior-3d"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--prior", choices=("layered", "stack"), default="layered",
                        help="layered: a layer given the one below (and a prior of the bottom "
                             "one); stack: one StackPixelCNN, a layer given every layer below")
    parser.add_argument("--context-layers", type=int, default=0,
                        help="--prior stack: the layers below it sees (0: all)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--figure", default=None,
                        help="a PNG: a real validation head, it given back, 3 drawn heads")
    parser.add_argument("--decoder", action="append", default=[], metavar="LABEL=FILE",
                        help="another VolumeVQVAE of the same codes to render them (repeatable)")
    parser.add_argument("--realism", action="store_true",
                        help="the feature-network figures of the drawn and the given-back heads "
                             "too (needs --data-dir)")
    parser.add_argument("--data-dir", default=None, help="the IXI volumes (with --realism)")
    parser.add_argument("--feature-network-dir", type=pathlib.Path,
                        default=pathlib.Path("output/volume-features"),
                        help="where --realism keeps its feature networks")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    args = parser.parse_args()
    if args.realism and not args.data_dir:
        parser.error("--realism needs --data-dir: the IXI volumes its real heads are cut from")
    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    args.work = args.root / args.name
    args.work.mkdir(parents=True, exist_ok=True)
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import volume_vqvae  # noqa: F401 - registers StackLoss, so the checkpoint loads

    vqvae = keras.saving.load_model(args.vqvae, compile=False)
    renderers = {"": vqvae}
    for text in args.decoder:
        label, _, path = text.partition("=")
        renderers[label] = keras.saving.load_model(path, compile=False)
        if not all(np.array_equal(a, b) for a, b in zip(
                renderers[label].quantizer.get_weights(), vqvae.quantizer.get_weights())):
            raise SystemExit(f"--decoder {text}: its codebook is not --vqvae's, so it does not "
                             f"render the same codes (give a decoder tuned from {args.vqvae})")
    with np.load(args.stacks) as stored:
        stacks = {name: stored[name] for name in ("train", "validate")}
    codes = load_codes(args, vqvae, stacks)
    priors = (train_stack_prior(args, codes, vqvae.num_codes) if args.prior == "stack"
              else train_priors(args, codes, vqvae.num_codes)[1:])
    settings = json.loads(pathlib.Path(args.settings).read_text())
    size = (settings["field_of_view"] / settings["image_size"], settings["slice_spacing"])
    training = stacks["train"].astype(np.float32)
    real = stacks["validate"].astype(np.float32)
    realism, splits = [], None  # (decoder, seed, volume report) with --realism
    if args.realism:
        run_values, _ = run_folder.load_run(pathlib.Path(args.settings).parent,
                                            {"data_dir": args.data_dir})
        splits, _ = layouts.load_splits_for(run_values)

    def judge_realism(name, seed, judged):
        if args.realism:
            report = volume_checks.volume_report(
                run_values, None, None, splits, "validate", len(judged), seed,
                args.feature_network_dir, None, independent=False, stacks=judged)
            realism.append(((name, "null"), seed, report))

    rows = [dict(name="real validation stacks", **figures(real, training, *size))]
    for label, renderer in renderers.items():
        given_back = decode_volumes(renderer, codes["validate"])
        rows.append(dict(name=f"validation stacks given back {label}".strip(),
                         **figures(given_back, training, *size)))
        judge_realism(f"given back {label}".strip(), 0, given_back)
    shown = [real[0], given_back[0]]  # by the last decoder
    print(json.dumps(rows), flush=True)
    layers, grid = codes["train"].shape[1], codes["train"].shape[2]
    seeds = [int(text) for text in args.seeds.split(",") if text]  # "": the given back only
    for seed in seeds:
        started = time.perf_counter()
        drawn = draw(args, priors, args.volumes, layers, grid, seed)
        for label, renderer in renderers.items():
            samples = decode_volumes(renderer, drawn)
            seconds = (time.perf_counter() - started) / args.volumes
            rows.append(dict(name=f"drawn, seed {seed} {label}".strip(),
                             seconds_a_volume=round(seconds, 2),
                             **figures(samples, training, *size)))
            np.save(args.work / f"samples_seed{seed}{label and '_' + label}.npy",
                    samples[:4].astype(np.float16))
            print(json.dumps(rows[-1]), flush=True)
            judge_realism(f"drawn {label}".strip(), seed, samples)
            started = time.perf_counter()  # the next decoder's time: its rendering alone
        shown += list(samples[:3]) if len(shown) == 2 else []
    keys = ("streak_index", "high_frequency_share", "neighbour_ssim", "head_ml", "head_ml_sd",
            "nearest_training_ssim_max")
    print(f"\n{'':44s} " + " ".join(f"{key[:14]:>14s}" for key in keys))
    for row in rows:
        print(f"{row['name']:44s} " + " ".join(f"{row[key]:14.3f}" for key in keys))
    (args.work / "judged.json").write_text(json.dumps(rows, indent=1))
    if realism:
        print("\n" + volume_realism.table(realism))
        (args.work / "realism.json").write_text(json.dumps(
            [[name, seed, report] for (name, _), seed, report in realism], indent=1))
    if args.figure and seeds:
        plots.plot_volume_planes(
            shown, args.figure, *size,
            titles=["real (validation)", "it, given back"] + [f"drawn {n + 1}" for n in range(3)],
            title=f"A VolumeVQVAE's {vqvae.code_shape(real.shape[1:])} codes, drawn layer by "
                  f"layer ({args.prior} prior, seed {seeds[0]})")
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
