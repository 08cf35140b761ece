"""Training settings: defaults, then a TOML settings file, then the command line."""

from __future__ import annotations

import pytest

from stg_cli.errors import UserError
from stg_cli.models.config import ModelConfig
from stg_cli.train.config import TrainConfig, model_defaults, read_settings_file, resolve_settings


def test_defaults_come_from_the_dataclasses():
    config, model = resolve_settings(None, {}, {})
    assert config == TrainConfig()
    assert model["dim"] == ModelConfig.dim and model["select"] == ModelConfig.select
    assert set(model) == set(model_defaults())


def test_the_file_overrides_defaults_and_options_override_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nsteps = 40\nlr = 5e-4\n\n[model]\ndim = 64\nselect = "global"\n')
    config, model = resolve_settings(path, {"lr": 1e-2, "batch_size": None}, {"dim": None, "frames_t": 2})
    assert config.steps == 40 and config.lr == 1e-2 and config.batch_size == TrainConfig.batch_size
    assert model["dim"] == 64 and model["select"] == "global" and model["frames_t"] == 2
    assert config.negatives == "any"
    same_video, _ = resolve_settings(path, {"negatives": "same-video"}, {})
    assert same_video.negatives == "same-video"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nstep = 3\n", r"unknown \[train\] key\(s\) step"),
        ("[model]\nvisual_dim = 3\n", r"unknown \[model\] key\(s\) visual_dim"),
        ("[optimizer]\nlr = 1\n", r"unknown table\(s\) optimizer"),
        ("[train\n", "not a readable TOML"),
        ("train = 3\n", "train must be a table"),
        ("[train]\nlr = -1.0\n", "--lr must be > 0"),
        ("[train]\nloss = 'nope'\n", "loss must be one of"),
        ("[train]\nnegatives = 'other-video'\n", "--negatives must be one of any, same-video"),
    ],
)
def test_bad_files_are_user_errors_naming_the_key(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        resolve_settings(path, {}, {})


def test_a_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="settings file not found"):
        read_settings_file(tmp_path / "nope.toml")
