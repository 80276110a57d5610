"""A run folder that draws whole heads as one 3D code (`--volume-latent 3d`), from a shipped
slice model and a `VolumeVQVAE` trained by docs/experiments/volume_vqvae.py, so that
`python train.py --stage volume --resume --output-dir RUN` trains its 3D volume prior and
`predict.py` / `similarity.py --volumes` / `benchmark.py volumes` / `train.py --export` take it
as any run. The slice models (VQ-VAE and slice prior, with their records) are copied from
`--from`; the volume VQ-VAE is saved without its optimizer state and recorded as a finished
stage; the hyperparameters are `--from`'s with the volume VQ-VAE's settings and the flags below.

    PYTHONPATH=. python docs/experiments/volume3d_run.py --from pretrained/ixi-t1-128-volumes \
        --volume-vqvae output/volume-vqvae/slice4/best.keras --output-dir output/ixi-vol3d \
        --data-dir ../shared/data/ixi --covariates runs/head-sizes.csv \
        --volume-condition-on age,sex,head_volume
    PYTHONPATH=. python train.py --stage volume --resume --output-dir output/ixi-vol3d

`--replace` puts another `VolumeVQVAE` of the same encoder and codebook (a decoder tuned by
`volume_vqvae.py --tune-from`) into an existing such run, its settings recorded: the run's volume
prior stays valid, as its codes are unchanged (refused otherwise).
"""
import argparse
import os
import pathlib
import shutil

from brainvq import config
from brainvq.runs import run_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", default="pretrained/ixi-t1-128-volumes",
                        help="a shipped (or trained) slice model cut as stacks")
    parser.add_argument("--volume-vqvae", required=True, help="a trained VolumeVQVAE (.keras)")
    parser.add_argument("--output-dir", required=True, help="the run folder to make (new)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--covariates", default="")
    parser.add_argument("--volume-condition-on", default="")
    parser.add_argument("--unconditional-covariates", default="drawn",
                        help="how heads are drawn when no covariates are asked for")
    parser.add_argument("--prior-epochs", type=int, default=10)
    parser.add_argument("--replace", action="store_true",
                        help="put --volume-vqvae (the same codes) into the run --output-dir")
    args = parser.parse_args()
    source, output_dir = pathlib.Path(args.source), pathlib.Path(args.output_dir)
    volume_vqvae = run_folder.load_checkpoint(args.volume_vqvae, compile=False)  # no optimizer
    if args.replace:
        replace(output_dir, volume_vqvae, args.volume_vqvae)
        return
    if output_dir.exists():
        raise SystemExit(f"{output_dir} exists: give a new folder (or --replace)")
    values = dict(config.load(source), output_dir=str(output_dir), images_dir="",
                  data_dir=os.path.abspath(args.data_dir), volume_latent="3d",
                  volume_slice_downsamples=volume_vqvae.slice_downsamples,
                  volume_channels=volume_vqvae.channels,
                  volume_upsampling=volume_vqvae.upsampling,
                  covariates=os.path.abspath(args.covariates) if args.covariates else "",
                  volume_condition_on=args.volume_condition_on,
                  unconditional_covariates=args.unconditional_covariates,
                  prior_epochs=args.prior_epochs, prior_patience=3)
    problem = config.combination_problem(values)
    if problem:
        raise SystemExit(f"error: {problem}")
    output_dir.mkdir(parents=True)
    for name in (run_folder.VQVAE_FILE, run_folder.PRIOR_FILE):
        shutil.copyfile(source / name, output_dir / name)
    volume_vqvae.save(output_dir / run_folder.VOLUME_VQVAE_FILE)
    config.save(values, output_dir)
    state = run_folder.read_state(source)
    run_folder.write_state(output_dir, {
        "vqvae": state.get("vqvae", {}), "prior": state.get("prior", {}),
        "volume_vqvae": {"trained_by": "docs/experiments/volume_vqvae.py",
                         "from": pathlib.Path(args.volume_vqvae).name},
    })
    print(f"wrote {output_dir}: train its volume prior with `python train.py --stage volume "
          f"--resume --output-dir {output_dir}`")


def replace(output_dir, volume_vqvae, name):
    """`volume_vqvae` as the run's, when its encoder and codebook are the run's volume prior's."""
    state = run_folder.read_state(output_dir)
    recorded = state.get("volume", {}).get("volume_codebook_fingerprint")
    if recorded is not None and recorded != run_folder.codebook_fingerprint(volume_vqvae):
        raise SystemExit(f"{name} codes heads otherwise than the volume VQ-VAE {output_dir}'s "
                         f"volume prior was trained over: it cannot replace it")
    volume_vqvae.save(output_dir / run_folder.VOLUME_VQVAE_FILE)
    values = config.load(output_dir)
    config.save(dict(values, volume_upsampling=volume_vqvae.upsampling,
                     volume_channels=volume_vqvae.channels), output_dir)
    state["volume_vqvae"] = dict(state.get("volume_vqvae", {}),
                                 decoder_from=pathlib.Path(name).name)
    run_folder.write_state(output_dir, state)
    print(f"{output_dir}: volume VQ-VAE replaced by {name}")


if __name__ == "__main__":
    main()
