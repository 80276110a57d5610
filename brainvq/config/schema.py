"""The configuration as typed objects, one per stage: what the VQ-VAE, the prior and their
training are built from, with the defaults of `defaults.DEFAULTS`.

A run folder and the command line hold one flat dict of values (`hyperparameters.json`, one key
per `--flag`); `from_values` reads a stage's part of it, `as_values` writes it back, so old run
folders (completed with `LEGACY_VALUES` by `values.load`) and the shipped models load as they did.

    vqvae = VQVAEConfig.from_values(values)
    model = VQVAETrainer(**vqvae.network_arguments())
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from brainvq.config.defaults import DEFAULTS


def _default(key: str) -> Any:
    return dataclasses.field(default=DEFAULTS[key])


class _Section:
    """A frozen dataclass whose fields are keys of the flat values dict, each the field's name
    after `PREFIX` (a field listed in `UNPREFIXED` keeps its name)."""

    PREFIX: ClassVar[str] = ""
    UNPREFIXED: ClassVar[frozenset] = frozenset()

    @classmethod
    def key(cls, name: str) -> str:
        """The values dict's key (and `--flag`) of field `name`."""
        return name if name in cls.UNPREFIXED else cls.PREFIX + name

    @classmethod
    def from_values(cls, values: Mapping[str, Any]):
        """This stage's settings from a flat values dict (the default where a key is absent)."""
        return cls(**{field.name: values.get(cls.key(field.name), DEFAULTS[cls.key(field.name)])
                      for field in dataclasses.fields(cls)})

    def as_values(self) -> dict:
        """The flat values dict's entries of these settings."""
        return {self.key(field.name): getattr(self, field.name)
                for field in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class VQVAEConfig(_Section):
    """The VQ-VAE: its shape (`image_size` .. `top_code_dim` fix it), its quantizer and losses."""

    image_size: int = _default("image_size")
    num_codes: int = _default("num_codes")
    code_dim: int = _default("code_dim")
    num_downsamples: int = _default("num_downsamples")
    channels: int = _default("channels")
    num_residual_blocks: int = _default("num_residual_blocks")
    attention: bool = _default("attention")
    levels: int = _default("levels")
    top_code_dim: int = _default("top_code_dim")
    commitment_cost: float = _default("commitment_cost")
    use_ema: bool = _default("use_ema")
    ema_decay: float = _default("ema_decay")
    dead_code_threshold: float = _default("dead_code_threshold")
    ssim_weight: float = _default("ssim_weight")
    ssim_warmup_steps: int = _default("ssim_warmup_steps")
    ssim_window: str = _default("ssim_window")
    perceptual_weight: float = _default("perceptual_weight")
    adversarial_weight: float = _default("adversarial_weight")
    adversarial_start: int = _default("adversarial_start")

    @property
    def grid_size(self) -> int:
        """The side of the (bottom) code grid."""
        return self.image_size // 2 ** self.num_downsamples

    def network_arguments(self) -> dict:
        """`VQVAETrainer` keyword arguments (with `levels` 2, `VQVAE2Trainer`'s)."""
        arguments = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                     if field.name not in ("levels", "top_code_dim")}
        if self.levels == 2:
            arguments["top_code_dim"] = self.top_code_dim
        return arguments


@dataclasses.dataclass(frozen=True)
class PriorConfig(_Section):
    """The PixelCNN prior over the code grids: its network, the augmented code grids it learns
    from, and its training (`--prior-*` flags)."""

    PREFIX: ClassVar[str] = "prior_"
    UNPREFIXED: ClassVar[frozenset] = frozenset({"num_codes", "num_slice_positions", "levels",
                                                 "volume_condition_noise"})

    num_codes: int = _default("num_codes")
    num_slice_positions: int = _default("num_slice_positions")
    levels: int = _default("levels")
    filters: int = _default("prior_filters")
    layers: int = _default("prior_layers")
    kernel_size: int = _default("prior_kernel_size")
    dropout: float = _default("prior_dropout")
    attention_blocks: int = _default("prior_attention_blocks")
    attention_heads: int = _default("prior_attention_heads")
    position_embedding: bool = _default("prior_position_embedding")
    volume_condition_noise: float = _default("volume_condition_noise")
    augment_copies: int = _default("prior_augment_copies")
    augment_shift: int = _default("prior_augment_shift")
    augment_rotation: float = _default("prior_augment_rotation")
    augment_scale: float = _default("prior_augment_scale")
    augment_condition: bool = _default("prior_augment_condition")
    pose_condition: bool = _default("prior_pose_condition")
    original_weight: int = _default("prior_original_weight")
    batch_size: int = _default("prior_batch_size")
    learning_rate: float = _default("prior_learning_rate")
    weight_decay: float = _default("prior_weight_decay")
    weight_averaging: float = _default("prior_weight_averaging")
    epochs: int = _default("prior_epochs")
    patience: int = _default("prior_patience")
    init: str = _default("prior_init")
    snapshot_every: int = _default("prior_snapshot_every")

    def network_arguments(self) -> dict:
        """`GatedPixelCNN` keyword arguments (all but grid_size and the conditions)."""
        return dict(num_codes=self.num_codes, filters=self.filters, num_layers=self.layers,
                    kernel_size=self.kernel_size, dropout=self.dropout,
                    num_slice_positions=self.num_slice_positions,
                    attention_blocks=self.attention_blocks,
                    attention_heads=self.attention_heads,
                    position_embedding=self.position_embedding)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(_Section):
    """How the VQ-VAE stage trains, and the run's devices and seed (the prior's own training
    settings are in `PriorConfig`)."""

    batch_size: int = _default("batch_size")
    learning_rate: float = _default("learning_rate")
    warmup_steps: int = _default("warmup_steps")
    epochs: int = _default("epochs")
    steps_per_epoch: int = _default("steps_per_epoch")
    patience: int = _default("patience")
    seed: int = _default("seed")
    strategy: str = _default("strategy")
    mixed_precision: bool = _default("mixed_precision")
    run_eagerly: bool = _default("run_eagerly")
