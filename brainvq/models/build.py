"""Models from a hyperparameters dict: the one place that reads the command-line configuration
(`hyperparameters.py`) and the one place that switches on `levels` (one code grid, or two).

The model classes themselves take explicit arguments with literal defaults; these factories
map a run's values onto them.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from brainvq.config.schema import PriorConfig, TrainingConfig, VQVAEConfig
from brainvq.config.values import prior_values
from brainvq.data.augmentation import AUGMENTATION_PARAMETERS
from brainvq.models.hierarchy import HierarchicalPrior
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.models.stack_prior import StackPixelCNN
from brainvq.models.vqvae_trainer import LinearWarmup, VQVAE2Trainer, VQVAETrainer


def vqvae_from_hyperparameters(values: Mapping[str, Any]) -> VQVAETrainer:
    """A built `VQVAETrainer` from a hyperparameters dict; with `levels` 2, a `VQVAE2Trainer`."""
    settings = VQVAEConfig.from_values(values)
    cls = VQVAE2Trainer if settings.levels == 2 else VQVAETrainer
    model = cls(**settings.network_arguments())
    model.build()
    return model


def vqvae_optimizer(values: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """Adam at `learning_rate`, reached after `warmup_steps` of linear warm-up (0: none)."""
    training = TrainingConfig.from_values(values)
    rate = training.learning_rate
    if training.warmup_steps > 0:
        rate = LinearWarmup(rate, training.warmup_steps)
    return keras.optimizers.Adam(rate)


def prior_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """`GatedPixelCNN` keyword arguments (all but grid_size) from a hyperparameters dict."""
    return PriorConfig.from_values(values).network_arguments()


def augmentation_inputs(values: Mapping[str, Any]) -> int:
    """How many augmentation parameters a (one-level) slice prior is conditioned on: those of
    `flip_and_shift` with `prior_augment_condition` and augmented copies, else 0."""
    settings = PriorConfig.from_values(values)
    if settings.augment_condition and settings.augment_copies > 0:
        return len(AUGMENTATION_PARAMETERS)
    return 0


def prior_from_hyperparameters(values: Mapping[str, Any], grid_size: int,
                               covariates: Sequence[Mapping[str, Any]] = ()) -> keras.Model:
    """A built prior from a hyperparameters dict: a `GatedPixelCNN` over code grids of side
    `grid_size` (conditioned on `covariates`, specs from `brainvq.data.covariates.specs`, beside
    the slice position), or with `levels` 2 a `HierarchicalPrior` (a top prior, and a bottom
    prior given the top codes) over the packed codes of a VQ-VAE-2 whose bottom grid is
    `grid_size`."""
    values = prior_values(values)
    prior = PriorConfig.from_values(values)
    settings = prior.network_arguments()
    if prior.levels == 2:
        top = GatedPixelCNN(grid_size=grid_size // 2, name="top_prior", **settings)
        bottom = GatedPixelCNN(grid_size=grid_size, condition_codes=prior.num_codes,
                               condition_grid_size=grid_size // 2, name="bottom_prior",
                               **settings)
        model = HierarchicalPrior(top, bottom, name="hierarchical_prior")
    else:
        model = GatedPixelCNN(grid_size=grid_size, name="pixelcnn_prior",
                              covariates=covariates,
                              augmentation_inputs=augmentation_inputs(values), **settings)
    model.build()
    return model


def volume_prior_from_hyperparameters(values: Mapping[str, Any], grid_size: int,
                                      covariates: Sequence[Mapping[str, Any]] = ()
                                      ) -> GatedPixelCNN:
    """The volume prior: a `GatedPixelCNN` like the slice prior, also conditioned on the code grid
    of the slice below (a spatial condition of the grid's own size, from the same codebook),
    trained with `volume_condition_noise` of those codes replaced by random ones, and on the
    slice prior's `covariates` (a whole volume's age, sex, ...)."""
    values = prior_values(values)
    model = GatedPixelCNN(grid_size=grid_size, condition_codes=values["num_codes"],
                          condition_grid_size=grid_size, name="volume_prior",
                          condition_noise=values.get("volume_condition_noise", 0.0),
                          covariates=covariates,
                          **prior_settings(values))
    model.build()
    return model


def stack_prior_from_hyperparameters(values: Mapping[str, Any], grid_size: int,
                                     context_layers: int,
                                     covariates: Sequence[Mapping[str, Any]] = ()
                                     ) -> StackPixelCNN:
    """The prior of a 3D code grid's layer given the `context_layers` layers below it
    (`stack_prior.StackPixelCNN`), with the slice prior's network settings and the volume
    prior's `volume_condition_noise`, conditioned on a whole head's `covariates` (specs)."""
    values = prior_values(values)
    model = StackPixelCNN(grid_size=grid_size, context_layers=context_layers,
                          condition_noise=values.get("volume_condition_noise", 0.0),
                          covariates=covariates, name="stack_prior", **prior_settings(values))
    model.build()
    return model
