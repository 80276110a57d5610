"""Which latent spans the slices? Slab autoencoders of two depths over the shipped stacks' codes.

The shipped volume model's VQ-VAE codes each 2 mm axial slice of a 64-slice stack as 16 x 16
codes. A `SlabAutoencoder` (brainvq/models/slabs.py) codes the stack's [64, 16, 16] codes again
as [64 / f, 16, 16] slab codes and decodes them back to slice codes, which the VQ-VAE decodes to
images. For each slab depth f this trains one on the 125 training subjects' stacks (and their
left-right mirror images), and judges the 20 validation subjects' stacks decoded through it
beside the same stacks decoded straight from their slice codes (no slab bottleneck) and the real
stacks: the slice codes it gets right, the slices' SSIM to the real ones, and the streak figures
of `brainvq/evaluation/streaks.py`. Results: docs/experiments.md, "A latent that spans the
slices". Run from the repository root (2 CPU cores: about 10 minutes to encode, then minutes
an epoch):

    PYTHONPATH=. python docs/experiments/slab_latent.py --data-dir ../shared/data/ixi \
        --depths 4,8 --epochs 8

Writes `output/slab-latent/` (the codes, each depth's `slab_<f>.keras` and its log).
"""
import argparse
import json
import pathlib

import keras
import numpy as np

from brainvq.data import layouts
from brainvq.data.stacks import subject_stacks
from brainvq.evaluation import streaks
from brainvq.generation import generate
from brainvq.generation import stacks as stack_sampling
from brainvq.models.slabs import SlabAutoencoder
from brainvq.runs import run_folder


def stack_codes(vqvae, stacks, flip=False):
    """[V, S, g, g] slice codes of stacks [V, S, H, W] (mirrored left-right with `flip`)."""
    stacks = np.asarray(stacks, np.float32)
    if flip:
        stacks = stacks[..., ::-1]
    flat = stacks.reshape((-1,) + stacks.shape[2:])[..., None]
    codes = generate.encode_all(vqvae, np.ascontiguousarray(flat), what="stack slices")
    return codes.reshape(stacks.shape[:2] + codes.shape[1:])


def load_codes(args):
    """{"train", "validate"} -> slice codes, and the real validation stacks; cached."""
    cache = args.work_dir / "codes.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {name: stored[name] for name in stored.files}
    values, vqvae = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, _ = layouts.load_splits_for(values)
    length = stack_sampling.stack_length(values)
    train = np.stack(list(subject_stacks(splits["train"], length).values()))
    validate = np.stack(list(subject_stacks(splits["validate"], length).values()))
    arrays = {"train": np.concatenate([stack_codes(vqvae, train),
                                       stack_codes(vqvae, train, flip=True)]),
              "validate": stack_codes(vqvae, validate),
              "validate_stacks": validate.astype(np.float16)}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def train(depth, codes, args):
    """A slab autoencoder of `depth` fitted on the training codes; the best epoch's."""
    path = args.work_dir / f"slab_{depth}.keras"
    if path.is_file() and not args.retrain:
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(args.seed)
    model = SlabAutoencoder(num_slice_codes=args.num_slice_codes, slab_depth=depth,
                            slab_num_codes=args.num_codes, slab_channels=args.channels,
                            blocks=args.blocks)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    model.fit(codes["train"], validation_data=(codes["validate"],), epochs=args.epochs,
              batch_size=args.batch_size, verbose=2, callbacks=[
                  keras.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True),
                  keras.callbacks.CSVLogger(args.work_dir / f"slab_{depth}_log.csv")])
    return keras.saving.load_model(path)


def unquantized(vqvae, stacks, batch_size=64):
    """Stacks [V, S, H, W] through the VQ-VAE's encoder and decoder with no quantizer between:
    what its decoder makes of continuous latents, slice by slice."""
    flat = stacks.reshape((-1,) + stacks.shape[2:])[..., None]
    images = []
    for start in range(0, len(flat), batch_size):
        latents = vqvae.encoder(flat[start:start + batch_size])
        images.append(keras.ops.convert_to_numpy(vqvae.decoder(latents)))
    return np.clip(np.concatenate(images), 0.0, 1.0)[..., 0].reshape(stacks.shape)


def judge(name, stacks, real, codes=None, truth=None):
    """A dict of the figures of one set of decoded validation stacks."""
    row = {"name": name}
    if codes is not None:
        row["code_accuracy"] = float(np.mean(codes == truth))
    return dict(row, **streaks.stack_figures(stacks, real))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work-dir", type=pathlib.Path, default=pathlib.Path("output/slab-latent"))
    parser.add_argument("--depths", default="4,8")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--num-codes", type=int, default=512)
    parser.add_argument("--num-slice-codes", type=int, default=512)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()
    codes = load_codes(args)
    real = codes["validate_stacks"].astype(np.float32)
    _, vqvae = run_folder.load_run(args.output_dir)
    rows = [judge("real stacks", real, real),
            judge("slice codes decoded (no slab bottleneck)",
                  stack_sampling.decode_stacks(vqvae, codes["validate"]), real),
            judge("encoder latents decoded unquantized", unquantized(vqvae, real), real)]
    print(json.dumps(rows[1:]), flush=True)
    for depth in (int(text) for text in args.depths.split(",")):
        model = train(depth, codes, args)
        decoded = np.concatenate([
            keras.ops.convert_to_numpy(model.decode(model.encode(codes["validate"][i:i + 4])))
            for i in range(0, len(codes["validate"]), 4)])
        rows.append(judge(f"slab depth {depth} ({64 // depth}x16x16 codes)",
                          stack_sampling.decode_stacks(vqvae, decoded), real, decoded,
                          codes["validate"]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'':48s} {'code acc':>8s} {'SSIM':>6s} {'streak index':>14s} {'HF share':>14s}")
    for row in rows:
        print(f"{row['name']:48s} {row.get('code_accuracy', float('nan')):8.3f} "
              f"{row['slice_ssim']:6.3f} {row['streak_index']:7.3f} ± "
              f"{row['streak_index_sd']:.3f} {row['high_frequency_share']:7.4f} ± "
              f"{row['high_frequency_share_sd']:.4f}")
    (args.work_dir / "judged.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
