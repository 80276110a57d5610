"""The command-line flags that predict.py and similarity.py share. Light on purpose: the scripts
read their flags before the Keras backend starts."""
from __future__ import annotations

import argparse

from brainvq import config


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags that predict.py and similarity.py share: which run, which data, where to, and
    how samples are drawn (the same seed and values give both scripts the same samples)."""
    parser.add_argument("--output-dir", default=config.DEFAULTS["output_dir"],
                        help="the run to load (default: %(default)s)")
    parser.add_argument("--images-dir", default=None,
                        help="where figures are written (default: the run's images/ folder; for "
                             "a shipped model output/<its name>, since its folder is never "
                             "written)")
    parser.add_argument("--data-dir", default=None,
                        help="evaluate on this data instead of the run's own")
    parser.add_argument("--unconditional", default=None,
                        choices=config.CHOICES["unconditional"],
                        help="unconditional samples: draw each one's slice position as often as "
                             "the training slices have it, then sample conditioned on it "
                             "(positions), or sample under the prior's no-condition row (null) "
                             "(default: the run's)")
    parser.add_argument("--temperature", type=config.flag_type("temperature"),
                        default=None, help="sampling temperature (default: the run's)")
    parser.add_argument("--top-k", type=config.non_negative_int, default=None,
                        help="sample among the k most likely codes, 0 for all (default: the "
                             "run's)")
    parser.add_argument("--guidance", type=config.flag_type("guidance"), default=None,
                        help="classifier-free guidance on a requested slice position, 1 for "
                             "none (default: the run's)")
    parser.add_argument("--covariate-guidance", default=None,
                        type=config.flag_type("covariate_guidance"),
                        help="classifier-free guidance on requested covariates (--age, --sex), "
                             "1 for none (default: the run's)")
    parser.add_argument("--unconditional-guidance", default=None,
                        type=config.flag_type("unconditional_guidance"),
                        help="classifier-free guidance on the slice position an unconditional "
                             "sample drew (--unconditional positions), 1 for none (default: the "
                             "run's)")
    parser.add_argument("--unconditional-covariates", default=None,
                        choices=config.CHOICES["unconditional_covariates"],
                        help="samples and volumes that request no covariate, from a prior "
                             "trained on them: under its no-covariate row (null), or each with "
                             "one training subject's covariates (drawn) (default: the run's)")
    parser.add_argument("--pose-spread", type=config.flag_type("pose_spread"), default=None,
                        help="for a prior trained with --prior-pose-condition: 0 draws centred, "
                             "upright heads; s > 0 draws each at a training slice's pose (at "
                             "its slice position) times s (default: the run's)")
    parser.add_argument("--seed", type=config.non_negative_int, default=None,
                        help="sampling seed (default: the run's seed)")
    return parser
