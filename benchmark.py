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
    python benchmark.py rate-distortion --data-dir /tmp/oasis_png --steps 300 --points 8x,4x \
        --json part1.json                           # one budget per point; sweeps in parts:
    python benchmark.py rate-distortion --merge part1.json part2.json --figure rd.png

`sampling` and `throughput` time untrained models (the timings do not depend on the weights).
`quality` trains on the train and validate splits for a fixed wall-clock budget and reports
test-split quality, so two configurations can be compared on the same budget and the same bit
rate.
Figures are printed; nothing is asserted.
"""
import argparse
import os
import platform
import time

from rate_distortion import budget_text


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

    def compiled(crop):
        return lambda: sampling.sample_codes(prior, n, g, slice_index=3, seed=args.seed,
                                             crop=crop)

    def naive():
        return sampling.sample_codes_naive(prior, n, g, slice_index=3, seed=args.seed)

    candidates = [("compiled, row-cached", compiled(True))]
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
            seconds, _ = _timed(naive, args.repeats)
            label = "naive (predict per position)"
        rates["naive"] = n / seconds
        print(f"{label:>26}: {seconds:8.2f} s  {n / seconds:9.3f} "
              f"samples/s  ({1000 * seconds / (g * g):.2f} ms/position; warm-up predict "
              f"{warm_up:.2f} s)")
        for name in rates:
            if name != "naive":
                print(f"speed-up of {name} over naive: {rates[name] / rates['naive']:.1f}x")
    if keras.backend.backend() == "tensorflow":
        print(f"XLA (jit_compile) used by the compiled sampler: {sampling._xla_works()}")
    return rates


def benchmark_realism(args):
    """Realism of a trained run's samples on the validation subjects, for each temperature and
    top-k: what the sampling defaults are chosen by (never the test subjects)."""
    import dataset
    import inference
    import realism
    import runs

    values, vqvae = runs.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, description = dataset.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(f"{description}; run {args.output_dir}; {args.samples} unconditional + "
          f"{args.samples} slice-conditioned samples per setting, judged against the "
          f"validation split")
    rows = []
    for temperature in args.temperatures:
        for top_k in args.top_ks:
            samples, _ = inference.generate(values, vqvae, args.output_dir, args.samples,
                                          temperature=temperature, top_k=top_k, seed=args.seed)
            figures = realism.realism_report(
                values, vqvae, args.output_dir, splits["train"], splits["validate"], samples,
                args.samples, args.seed, temperature=temperature, top_k=top_k, verbose=False)
            rows.append((temperature, top_k, figures))
    floor = rows[0][2]
    print(f"{'T':>5} {'top-k':>6} {'plausible':>10} {'cond.':>6} {'Fréchet':>8} {'KID':>7} "
          f"{'prec.':>6} {'recall':>6} {'pos<=2':>7}")
    print(f"{'real':>5} {'':>6} {floor['plausible_real']:10.1%} {'':>6} "
          f"{floor['frechet_real']:8.3f} {floor['kid_real']:7.4f} {floor['precision_real']:6.2f} "
          f"{floor['recall_real']:6.2f} {floor['position_within_2_real']:7.1%}")
    for temperature, top_k, figures in rows:
        print(f"{temperature:5.2f} {top_k:6d} {figures['plausible_samples']:10.1%} "
              f"{figures['plausible_conditioned']:6.1%} {figures['frechet_samples']:8.3f} "
              f"{figures['kid_samples']:7.4f} {figures['precision_samples']:6.2f} "
              f"{figures['recall_samples']:6.2f} {figures['position_within_2_samples']:7.1%}")
    return rows


class _Budget:
    """A callback factory: stops `fit` once `seconds` of training have passed or, with `steps`,
    after exactly that many optimizer steps (a budget that gives the same figure on any machine,
    busy or idle)."""

    @staticmethod
    def make(seconds, steps=0):
        import keras

        class Budget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.images, self.steps = time.perf_counter(), 0, 0

            def on_train_batch_end(self, batch, logs=None):
                self.images += self.batch_size
                self.steps += 1
                if steps:
                    spent = self.steps >= steps
                else:
                    spent = time.perf_counter() - self.start > seconds
                if spent:
                    self.model.stop_training = True

        return Budget()


STEPS_HELP = ("train for exactly this many optimizer steps (at least 1) instead of --minutes: "
              "the same figure on any machine, busy or idle")


def positive_steps(text):
    """argparse type of --steps: a whole number >= 1 (leave the flag out to use --minutes)."""
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if steps < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {steps} (leave --steps out to "
                                         f"train for --minutes)")
    return steps


# The keras-io vq_vae.py design as published: 128 codes of 16 dimensions (`VQVAETrainer(
# data_variance, latent_dim=16, num_embeddings=128)`), plain VQ loss with beta 0.25, the MSE
# divided by the variance of the training images, no SSIM term, Adam 1e-3, batch 128, the
# codebook initialised at random (no first-batch k-means, no EMA, no dead-code restart).
KERASIO = {"num_codes": 128, "code_dim": 16, "batch_size": 128, "learning_rate": 1e-3,
           "commitment_cost": 0.25}


def quality_model(values, baseline, train_images=None):
    """Our VQ-VAE from `values`, or the keras-io design (which needs `train_images` for the
    variance its MSE is divided by)."""
    import keras
    import numpy as np

    import modules
    import perceptual

    if baseline == "kerasio":
        variance = 1.0 if train_images is None else float(np.var(train_images))
        model = modules.VQVAETrainer(
            image_size=values["image_size"], num_codes=KERASIO["num_codes"],
            code_dim=KERASIO["code_dim"], use_ema=False, ssim_weight=0.0,
            architecture="kerasio", commitment_cost=KERASIO["commitment_cost"],
            data_variance=variance)
        model.quantizer.init_from_data = False
        model.build()
        model.compile(optimizer=keras.optimizers.Adam(KERASIO["learning_rate"]))
        return model
    model = modules.vqvae_from_hyperparameters(values)
    perceptual.attach_feature_network(model, values)
    model.compile(optimizer=modules.vqvae_optimizer(values))
    return model


def _train_for_budget(values, baseline, train, minutes, steps=0):
    """A VQ-VAE (ours from `values`, or the baseline) trained on `train` for `minutes`, or for
    `steps` optimizer steps when `steps` > 0.

    Returns:
        (model, images_seen, seconds).
    """
    import keras

    import dataset

    batch_size = KERASIO["batch_size"] if baseline == "kerasio" else values["batch_size"]
    keras.utils.set_random_seed(values["seed"])
    model = quality_model(values, baseline, train.images)
    budget = _Budget.make(minutes * 60.0, steps)
    budget.batch_size = batch_size
    train_data = dataset.make_dataset(train, batch_size, shuffle=True, seed=values["seed"],
                                     repeat=True)
    steps = max(len(train) // batch_size, 1)
    model.fit(train_data, epochs=100000, steps_per_epoch=steps, callbacks=[budget], verbose=0,
              shuffle=False)  # the input pipeline shuffles
    return model, budget.images, time.perf_counter() - budget.start


def _reconstruction_quality(model, slices):
    """Per-image SSIM, PSNR, MS-SSIM and brain SSIM of `model`'s reconstructions of `slices`,
    and the codes it used."""
    import numpy as np

    import metrics
    import inference

    reconstructions = np.clip(model.predict(slices.images, batch_size=64, verbose=0), 0, 1)
    per_image = metrics.per_image_metrics(slices.images, reconstructions)
    codes = inference.encode_all(model, slices.images)
    return per_image, len(np.unique(codes))


def _subjects(slices, count, seed, flag="--subjects", values=None):
    """The slices of `count` subjects of `slices`, drawn in a seeded order (nested: the first
    8 of 32 are the 8); `flag` names the option in the error for too many."""
    import numpy as np

    import dataset

    cases = np.unique(slices.case_id)
    if count > len(cases):
        more = "a larger data set"
        if values is not None and dataset.data_layout(values["data_dir"]) == "nifti-volumes":
            more = "--split to give it more (e.g. --split 125,20,20)"
        raise SystemExit(f"error: {flag} {count}: the training subjects here number only "
                         f"{len(cases)}; use {more}.")
    chosen = np.random.default_rng(seed).permutation(cases)[:count]
    return slices.take(np.isin(slices.case_id, chosen))


def benchmark_quality(args):
    """Trains a VQ-VAE for a fixed wall-clock budget, then measures the test split."""

    import numpy as np

    import dataset
    import hyperparameters

    values = hyperparameters.resolve(args)
    splits, description = dataset.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(description)
    # No model selection happens here, so the validation split is training data too.
    train = dataset.SliceSet.join([splits["train"], splits["validate"]])
    if args.train_subjects:
        train = _subjects(train, args.train_subjects, values["seed"], "--train-subjects",
                          values)
    batch_size = KERASIO["batch_size"] if args.baseline == "kerasio" else values["batch_size"]
    name = "keras-io vq_vae.py design" if args.baseline == "kerasio" else "ours"
    print(f"training on {len(np.unique(train.case_id))} subjects of train + validate: "
          f"{len(train)} slices; testing on test: {len(splits['test'])} slices; batch "
          f"{batch_size}, budget {budget_text(args.minutes, args.steps)}")
    model, images, seconds = _train_for_budget(values, args.baseline, train, args.minutes,
                                               args.steps)
    print(f"model: {name}, grid {model.grid_size}x{model.grid_size}, K={model.num_codes}, "
          f"D={model.code_dim}, {model.count_params():,} parameters")
    test = splits["test"]
    per_image, used = _reconstruction_quality(model, test)
    bits = model.code_bits
    psnr = per_image["psnr"][np.isfinite(per_image["psnr"])]
    train_quality, _ = _reconstruction_quality(model, train)
    print(f"trained {images:,} images in {seconds:.0f} s")
    print(f"mean SSIM on the training slices: {train_quality['ssim'].mean():.4f} (compare with "
          f"the test SSIM below)")
    print(f"test slices: {len(test)}")
    print(f"mean SSIM: {per_image['ssim'].mean():.4f} ± {per_image['ssim'].std():.4f}")
    print(f"mean brain SSIM: {per_image['brain_ssim'].mean():.4f}")
    print(f"mean sharpness (gradient-magnitude ratio inside the brain): "
          f"{np.nanmean(per_image['sharpness']):.3f}")
    print(f"mean PSNR: {psnr.mean():.2f} dB")
    print(f"codebook usage (test split): {used}/{model.num_codes} codes "
          f"({used / model.num_codes:.1%})")
    grids = " + ".join(f"{side}x{side}" for side in
                       ([model.top_grid_size] if model.levels == 2 else []) + [model.grid_size])
    print(f"code bits per image: {bits:,.0f} (({grids}) x log2 {model.num_codes})")
    print(f"training images/s: {images / seconds:.1f}")
    return per_image


def benchmark_learning_curve(args):
    """Held-out SSIM against the number of training subjects, at one wall-clock budget each.

    Every point trains a fresh VQ-VAE on the first N subjects of the train split (nested sets,
    seeded order) for `--minutes`, and is tested on the same test subjects; the training-subject
    SSIM is printed beside it, so the gap between the two can be read per point.
    """
    import json
    import pathlib

    import numpy as np

    import dataset
    import hyperparameters

    values = hyperparameters.resolve(args)
    splits, description = dataset.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(description)
    test = splits["test"]
    rows = []
    print(f"{'subjects':>8} {'slices':>7} {'images':>8} {'epochs':>6} {'train SSIM':>10} "
          f"{'test SSIM':>15} {'test brain SSIM':>15}")
    for count in args.subjects:
        train = _subjects(splits["train"], count, values["seed"], values=values)
        model, images, seconds = _train_for_budget(values, None, train, args.minutes,
                                                   args.steps)
        train_quality, _ = _reconstruction_quality(model, train)
        test_quality, used = _reconstruction_quality(model, test)
        row = {"subjects": count, "slices": len(train), "images_seen": images,
               "seconds": round(seconds, 1), "epochs": images / len(train),
               "train_ssim": float(train_quality["ssim"].mean()),
               "test_ssim": float(test_quality["ssim"].mean()),
               "test_ssim_std": float(test_quality["ssim"].std()),
               "test_brain_ssim": float(np.nanmean(test_quality["brain_ssim"])),
               "test_sharpness": float(np.nanmean(test_quality["sharpness"])),
               "test_codes_used": used}
        rows.append(row)
        print(f"{count:>8} {len(train):>7} {images:>8,} {row['epochs']:>6.1f} "
              f"{row['train_ssim']:>10.4f} {row['test_ssim']:>8.4f} ± {row['test_ssim_std']:.3f} "
              f"{row['test_brain_ssim']:>15.4f}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"machine": machine_description(), "data": description, "minutes": args.minutes,
             "steps": args.steps,
             "test_slices": len(test), "rows": rows}, indent=2))
    if args.figure:
        import figures

        budget = budget_text(args.minutes, args.steps)
        figures.learning_curve(rows, args.figure, title=f"{budget} per point, "
                               f"{len(np.unique(test.case_id))} test subjects")
        print(f"figure: {args.figure}")
    return rows


def benchmark_rate_distortion(args):
    """Held-out SSIM against code bits per image, one design per point, same budget each
    (rate_distortion.py); prints the table, writes --json and --figure."""
    import rate_distortion

    if args.merge:
        return rate_distortion.merge(args.merge, args.points.split(","), args.json, args.figure)
    return rate_distortion.run(args, machine_description(), _train_for_budget,
                               _reconstruction_quality, budget_text(args.minutes, args.steps))


def benchmark_throughput(args):
    """Training and reconstruction images/s of our VQ-VAE and a keras-io-sized one."""
    import keras
    import numpy as np

    import hyperparameters

    values = hyperparameters.resolve(args)
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
        train_seconds, _ = _timed(lambda: model.fit(images, batch_size=batch, epochs=1,
                                                    verbose=0), args.repeats)
        predict_seconds, _ = _timed(lambda: model.predict(images, batch_size=batch, verbose=0),
                                    args.repeats)
        name = "keras-io design" if baseline else "ours"
        rates[name] = (args.images / train_seconds, args.images / predict_seconds)
        print(f"{name:>16}: {model.count_params():>10,} parameters, "
              f"train {rates[name][0]:8.1f} images/s, reconstruct {rates[name][1]:8.1f} images/s")
    print(f"ratio ours / keras-io: train {rates['ours'][0] / rates['keras-io design'][0]:.2f}x, "
          f"reconstruct {rates['ours'][1] / rates['keras-io design'][1]:.2f}x")
    return rates


def slice_positions(args):
    """A figure of the slices at chosen positions, one row per volume (the slice range's check)."""
    import numpy as np

    import figures
    import volumes
    from slice_sets import square_resize

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
                                 help="also time the compiled sampler without row caching "
                                      "(the prior on the whole grid at every step)")
    sampling_parser.add_argument("--skip-naive", action="store_true",
                                 help="do not time the naive loop (slow on big grids)")
    sampling_parser.add_argument("--naive-positions", type=int, default=0,
                                 help="time only this many of the naive loop's per-position "
                                      "predict calls and scale to the whole grid (0: run it)")
    import hyperparameters

    sampling_parser.add_argument("--attention-blocks", type=int,
                                 default=hyperparameters.DEFAULTS["prior_attention_blocks"])
    sampling_parser.add_argument("--attention-heads", type=int,
                                 default=hyperparameters.DEFAULTS["prior_attention_heads"])
    sampling_parser.add_argument("--position-embedding", type=hyperparameters._parse_bool,
                                 default=hyperparameters.DEFAULTS["prior_position_embedding"])
    sampling_parser.set_defaults(run=benchmark_sampling)

    realism_parser = commands.add_parser(
        "realism", help="sample realism on the validation split per temperature and top-k")
    realism_parser.add_argument("--output-dir", default=hyperparameters.DEFAULTS["output_dir"])
    realism_parser.add_argument("--data-dir", default=None)
    realism_parser.add_argument("--samples", type=int, default=64)
    realism_parser.add_argument("--temperatures", type=lambda text: [float(t) for t in
                                                                     text.split(",")],
                                default=[0.8, 0.9, 1.0])
    realism_parser.add_argument("--top-ks", type=lambda text: [int(k) for k in text.split(",")],
                                default=[0, 64])
    realism_parser.add_argument("--seed", type=int, default=0)
    realism_parser.set_defaults(run=benchmark_realism)

    quality_parser = commands.add_parser(
        "quality", help="train for a wall-clock budget, print test SSIM/PSNR/usage/bits")
    quality_parser.add_argument("--minutes", type=float, default=5.0)
    quality_parser.add_argument("--baseline", choices=("kerasio",), default=None,
                                help="run the keras-io vq_vae.py design instead of ours")
    quality_parser.add_argument("--train-subjects", type=int, default=0,
                                help="train on only this many subjects (0: all of train + "
                                     "validate)")
    quality_parser.add_argument("--steps", type=positive_steps, default=0, help=STEPS_HELP)
    hyperparameters.add_arguments(quality_parser)
    quality_parser.set_defaults(run=benchmark_quality)

    curve_parser = commands.add_parser(
        "learning-curve", help="held-out SSIM against the number of training subjects")
    curve_parser.add_argument("--subjects", default=[8, 32, 125],
                              type=lambda text: [int(n) for n in text.split(",")],
                              help="training subjects per point (default: 8,32,125)")
    curve_parser.add_argument("--minutes", type=float, default=10.0,
                              help="wall-clock training budget per point")
    curve_parser.add_argument("--json", default=None, help="also write the rows here")
    curve_parser.add_argument("--figure", default=None, help="plot the curve to this PNG")
    curve_parser.add_argument("--steps", type=positive_steps, default=0, help=STEPS_HELP)
    hyperparameters.add_arguments(curve_parser)
    curve_parser.set_defaults(run=benchmark_learning_curve)

    rd_parser = commands.add_parser(
        "rate-distortion", help="held-out SSIM against code bits per image, one design per "
                                "point (rate_distortion.py)")
    rd_parser.add_argument("--points", default="kerasio,seed,8x,4x,vqvae2-8x,vqvae2-4x",
                           help="designs, comma-separated; +adv adds the adversarial loss "
                                "(e.g. 8x+adv)")
    rd_parser.add_argument("--minutes", type=float, default=20.0,
                           help="wall-clock training budget per point")
    rd_parser.add_argument("--json", default=None, help="also write the rows here")
    rd_parser.add_argument("--figure", default=None, help="plot the points to this PNG")
    rd_parser.add_argument("--steps", type=positive_steps, default=0, help=STEPS_HELP)
    rd_parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                           help="train nothing: one table and figure of the --points found in "
                                "these earlier --json files (same data; a later file's row of "
                                "a design replaces an earlier one)")
    hyperparameters.add_arguments(rd_parser)
    rd_parser.set_defaults(run=benchmark_rate_distortion)

    throughput_parser = commands.add_parser(
        "throughput", help="training and reconstruction images/s, ours vs keras-io sized")
    throughput_parser.add_argument("--images", type=int, default=256)
    throughput_parser.add_argument("--repeats", type=int, default=2)
    hyperparameters.add_arguments(throughput_parser)
    throughput_parser.set_defaults(run=benchmark_throughput)

    positions_parser = commands.add_parser(
        "slice-positions", help="a figure of chosen slice positions of NIfTI volumes, one row "
                                "per volume (does one position show one level of the brain?)")
    positions_parser.add_argument("volumes", nargs="+", help="NIfTI volumes, one row each")
    positions_parser.add_argument("--positions", default=[0, 8, 16, 24, 31],
                                  type=lambda text: [int(p) for p in text.split(",")])
    positions_parser.add_argument("--slices-per-volume", type=int,
                                  default=hyperparameters.DEFAULTS["slices_per_volume"])
    positions_parser.add_argument("--image-size", type=int, default=128)
    positions_parser.add_argument("--figure", default="images/slice_positions.png")
    positions_parser.set_defaults(run=slice_positions)

    args = parser.parse_args(argv)
    import console

    console.quiet_start()
    return args.run(args)


if __name__ == "__main__":
    main()
