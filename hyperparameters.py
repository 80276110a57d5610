"""Every default of the pipeline, in one place.

Scripts build their command line from `DEFAULTS`: each key becomes a `--flag` (underscores become
dashes), so `python train.py --num-codes 256 --epochs 5` overrides two values and keeps the rest.
The values a run used are written as JSON next to its checkpoints (`hyperparameters.json`), and
`predict.py` / `similarity.py` read them back so they rebuild exactly the same model.
"""
# The values themselves live in the package (brainvq/config/), so that it works without this
# folder on the path; this module is their face under the original design's name.
from brainvq.config import *  # noqa: F403
from brainvq.config import __all__  # noqa: F401
