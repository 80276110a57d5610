"""The typed configuration (brainvq/config/schema.py): each stage's part of the flat values,
read and written back unchanged, and what the models are built from."""
import dataclasses

import pytest

from brainvq import config
from brainvq.config.schema import PriorConfig, TrainingConfig, VQVAEConfig


@pytest.mark.parametrize("section", [VQVAEConfig, PriorConfig, TrainingConfig])
def test_every_field_is_a_flag_with_its_default_and_round_trips(section):
    settings = section()
    assert set(settings.as_values()) <= set(config.DEFAULTS)
    assert settings.as_values() == {key: config.DEFAULTS[key] for key in settings.as_values()}
    values = dict(config.DEFAULTS, prior_filters=24, num_codes=32, batch_size=4,
                  prior_init="runs/x/prior.keras")
    assert section.from_values(values).as_values() == {
        key: values[key] for key in section.from_values(values).as_values()}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1  # frozen: a stage cannot change another's settings


def test_the_stages_read_their_own_flags():
    values = dict(config.DEFAULTS, prior_filters=24, prior_layers=3, num_codes=32,
                  prior_pose_condition=True, image_size=64, num_downsamples=2, levels=2)
    prior = PriorConfig.from_values(values)
    assert (prior.filters, prior.layers, prior.num_codes, prior.pose_condition) == (
        24, 3, 32, True)
    assert prior.network_arguments()["num_layers"] == 3
    vqvae = VQVAEConfig.from_values(values)
    assert vqvae.grid_size == 16 and vqvae.network_arguments()["top_code_dim"] == 64
    assert "levels" not in vqvae.network_arguments()


def test_a_run_folder_written_before_a_key_existed_reads_its_legacy_value(tmp_path):
    import json

    (tmp_path / config.HYPERPARAMETERS_FILE).write_text(json.dumps(
        {key: value for key, value in config.DEFAULTS.items()
         if key not in ("prior_pose_condition", "prior_augment_condition")}))
    prior = PriorConfig.from_values(config.load(tmp_path))
    assert prior.augment_condition is False and prior.pose_condition is False
