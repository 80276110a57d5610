"""A run folder, loaded: its configuration, its models and what it recorded at training.

Scripts load a `Run` once and pass it on, rather than a settings dict beside a folder path:

    run = Run.load("pretrained/ixi-t1-128")
    run.values["temperature"], run.vqvae.grid_size, run.prior.num_codes
    run.slice_position_counts  # how often each slice position occurs among the training slices
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from brainvq.hints import PathLike

if TYPE_CHECKING:
    import keras

from brainvq.runs import run_folder


@dataclasses.dataclass
class Run:
    """A trained run (or shipped model) folder.

    Attributes:
        folder: the folder.
        values: its hyperparameters, with the overrides it was loaded with.
        vqvae: its VQ-VAE.
    The priors load on first use (`prior`, `volume_prior`), checked against the VQ-VAE.
    """

    folder: pathlib.Path
    values: dict
    vqvae: object
    _priors: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, folder: PathLike, overrides: Mapping[str, Any] | None = None) -> Run:
        """Loads a finished run (`folder.load_run`: shipped models' files checked against
        their hashes; architecture overrides refused)."""
        values, vqvae = run_folder.load_run(folder, overrides)
        return cls(pathlib.Path(folder), values, vqvae)

    def _prior(self, stage: str) -> keras.Model:
        if stage not in self._priors:
            self._priors[stage] = run_folder.load_prior(self.folder, stage)
        return self._priors[stage]

    @property
    def prior(self) -> keras.Model:
        """The slice prior (loaded once)."""
        return self._prior("prior")

    @prior.setter
    def prior(self, prior: keras.Model) -> None:
        self._priors["prior"] = prior

    @property
    def volume_prior(self) -> keras.Model:
        """The volume prior of a run cut as stacks (loaded once)."""
        return self._prior("volume")

    @property
    def slice_position_counts(self) -> np.ndarray | None:
        """[P] how many training slices each slice position had; None when not recorded."""
        return run_folder.slice_position_counts(self.folder, self.values["num_slice_positions"])

    @property
    def slice_poses(self) -> np.ndarray:
        """[M, 3] the training slices' (slice position, centroid offset, tilt) that a prior
        trained with `prior_pose_condition` recorded (a RunError naming the flag that samples
        without them when it recorded none)."""
        return run_folder.slice_poses(self.folder)

    def subject_covariates(self, stage: str = "prior") -> np.ndarray:
        """[S, C] the training subjects' covariates rows as `stage` recorded them (a RunError
        naming the flag that samples without them when it recorded none)."""
        return run_folder.subject_covariates(self.folder, stage)
