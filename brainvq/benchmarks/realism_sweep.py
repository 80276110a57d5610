"""Sample realism on the validation split per temperature, top-k and guidance (choosing sampling
defaults)."""


import hyperparameters
from brainvq.benchmarks.harness import comma_separated, machine_description
from brainvq.data import layouts
from brainvq.evaluation import realism
from brainvq.generation import generate as inference
from brainvq.runs import folder as runs


def run(args):
    """Realism of a trained run's samples on the validation subjects, for each temperature and
    top-k: what the sampling defaults are chosen by (never the test subjects)."""
    values, vqvae = runs.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, description = layouts.load_splits_for(values)
    print(f"machine: {machine_description()}")
    print(f"{description}; run {args.output_dir}; {args.samples} unconditional + "
          f"{args.samples} slice-conditioned samples per setting, judged against the "
          f"validation split")
    rows = []
    for guidance in args.guidances:
        guided = dict(values, guidance=guidance)
        for temperature in args.temperatures:
            for top_k in args.top_ks:
                samples, _ = inference.generate(guided, vqvae, args.output_dir, args.samples,
                                                temperature=temperature, top_k=top_k,
                                                seed=args.seed)
                figures = realism.realism_report(
                    guided, vqvae, args.output_dir, splits["train"], splits["validate"],
                    samples, args.samples, args.seed, temperature=temperature, top_k=top_k,
                    verbose=False)
                rows.append((temperature, top_k, guidance, figures))
    floor = rows[0][3]
    print(f"{'T':>5} {'top-k':>6} {'guide':>6} {'plausible':>10} {'cond.':>6} {'Fréchet':>8} "
          f"{'KID':>7} {'prec.':>6} {'recall':>6} {'pos<=2':>7}")
    print(f"{'real':>5} {'':>6} {'':>6} {floor['plausible_real']:10.1%} {'':>6} "
          f"{floor['frechet_real']:8.3f} {floor['kid_real']:7.4f} {floor['precision_real']:6.2f} "
          f"{floor['recall_real']:6.2f} {floor['position_within_2_real']:7.1%}")
    for temperature, top_k, guidance, figures in rows:
        print(f"{temperature:5.2f} {top_k:6d} {guidance:6.2f} {figures['plausible_samples']:10.1%} "
              f"{figures['plausible_conditioned']:6.1%} {figures['frechet_samples']:8.3f} "
              f"{figures['kid_samples']:7.4f} {figures['precision_samples']:6.2f} "
              f"{figures['recall_samples']:6.2f} {figures['position_within_2_samples']:7.1%}")
    return rows


def add_parser(commands):
    """This benchmark's subcommand of benchmark.py."""
    realism_parser = commands.add_parser(
        "realism", help="sample realism on the validation split per temperature and top-k")
    realism_parser.add_argument("--output-dir", default=hyperparameters.DEFAULTS["output_dir"])
    realism_parser.add_argument("--data-dir", default=None)
    realism_parser.add_argument("--samples", type=int, default=64)
    realism_parser.add_argument("--temperatures", type=comma_separated(float),
                                default=[0.8, 0.9, 1.0])
    realism_parser.add_argument("--top-ks", type=comma_separated(int),
                                default=[0, 64])
    realism_parser.add_argument("--guidances", type=comma_separated(float),
                                default=[1.0], help="classifier-free guidance values (1: none)")
    realism_parser.add_argument("--seed", type=int, default=0)
    realism_parser.set_defaults(run=run)
