"""Tests of the hyperparameter flags, the saved JSON and the checkpoint compatibility check."""
import argparse

import pytest

import hyperparameters


def parse(*flags):
    parser = hyperparameters.add_arguments(argparse.ArgumentParser())
    return hyperparameters.resolve(parser.parse_args(list(flags)))


def test_flags_override_only_what_is_given():
    values = parse("--num-codes", "256", "--learning-rate", "3e-4")
    assert values["num_codes"] == 256 and values["learning_rate"] == 3e-4
    assert values["code_dim"] == hyperparameters.DEFAULTS["code_dim"]


def test_help_shows_each_default_as_it_is():
    parser = hyperparameters.add_arguments(argparse.ArgumentParser())
    shown = {action.dest: action.help for action in parser._actions if action.dest != "help"}
    assert shown["slice_spacing"] == "default: 0.0"  # zero is a default, not a missing one
    assert shown["patience"] == "default: 0"
    assert shown["covariates"] == "default: none"
    assert shown["images_dir"] == "default: <output-dir>/images"
    assert shown["num_codes"] == f"default: {hyperparameters.DEFAULTS['num_codes']}"


def test_boolean_flags_alone_mean_true_and_take_explicit_values():
    assert parse("--mixed-precision")["mixed_precision"] is True
    assert parse("--use-ema", "false")["use_ema"] is False
    assert parse()["skip_bad"] is False
    with pytest.raises(SystemExit):
        parse("--use-ema", "maybe")


def test_saved_values_round_trip(tmp_path):
    values = parse("--image-size", "64")
    hyperparameters.save(values, tmp_path)
    assert hyperparameters.load(tmp_path) == values


def test_load_names_the_missing_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python train.py --output-dir"):
        hyperparameters.load(tmp_path / "nothing here")


def test_mismatched_architecture_is_refused_naming_both_values():
    saved = dict(hyperparameters.DEFAULTS)
    wanted = dict(saved, num_codes=256, image_size=64, learning_rate=1.0)
    with pytest.raises(hyperparameters.IncompatibleCheckpoint) as refusal:
        hyperparameters.check_compatible(saved, wanted, "runs/x")
    message = str(refusal.value)
    assert "num_codes: checkpoint has 512, this run asks for 256" in message
    assert "image_size: checkpoint has 128, this run asks for 64" in message
    assert "learning_rate" not in message  # training settings may change on resume
    hyperparameters.check_compatible(saved, dict(saved, learning_rate=1.0), "runs/x")


def test_resume_changes_name_training_settings_only():
    saved = dict(hyperparameters.DEFAULTS, prior_augment_copies=4, learning_rate=1e-3)
    wanted = dict(hyperparameters.DEFAULTS, epochs=30, output_dir="elsewhere")
    assert hyperparameters.resume_changes(saved, wanted) == [
        ("learning_rate", 1e-3, hyperparameters.DEFAULTS["learning_rate"]),
        ("prior_augment_copies", 4, hyperparameters.DEFAULTS["prior_augment_copies"])]
    assert hyperparameters.resume_changes(saved, saved) == []


def test_condition_on_needs_a_covariates_file_and_one_level():
    assert "needs --covariates" in hyperparameters.combination_problem(
        parse("--condition-on", "age"))
    assert "one level" in hyperparameters.combination_problem(
        parse("--condition-on", "age", "--covariates", "t.csv", "--levels", "2"))
    assert hyperparameters.combination_problem(
        parse("--condition-on", "age", "--covariates", "t.csv")) is None


def test_stacks_need_axial_slices_and_one_position_per_slice():
    stack = ("--slice-spacing", "2", "--slices-per-volume", "64")
    assert "--num-slice-positions 64" in hyperparameters.combination_problem(parse(*stack))
    assert "axial" in hyperparameters.combination_problem(
        parse(*stack, "--num-slice-positions", "64", "--slice-axis", "coronal"))
    assert hyperparameters.combination_problem(
        parse(*stack, "--num-slice-positions", "64")) is None
    assert "must be > 0" in hyperparameters.value_problem("field_of_view", 0.0)
