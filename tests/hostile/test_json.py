"""JSON nested deeper than Python's recursion limit, in every file stg reads: one line naming
the file, never the catch-all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stg_cli.errors import UserError

DEEP = "[" * 200_000 + "]" * 200_000


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEEP)
    return path


def test_annotations(tmp_path):
    from stg_cli.metrics.annotations import load_grounding_youtube_boxes

    path = _write(tmp_path / "GoundingYouTubeBox.json")
    with pytest.raises(UserError, match=f"{path}: JSON nested too deeply"):
        load_grounding_youtube_boxes(path)


def test_predictions(tmp_path):
    from stg_cli.metrics.predictions import load_predictions

    path = _write(tmp_path / "predictions.json")
    with pytest.raises(UserError, match="JSON nested too deeply"):
        load_predictions(path)


def test_queries(tmp_path):
    from stg_cli.ground.queries import load_queries

    path = _write(tmp_path / "vid2step.json")
    with pytest.raises(UserError, match=f"{path}: JSON nested too deeply"):
        load_queries(path)


def test_captions_of_a_folder_are_a_bad_file_and_alone_a_user_error(tmp_path):
    from stg_cli.text.captions import read_captions

    _write(tmp_path / "caps" / "deep.json")
    (tmp_path / "caps" / "ok.json").write_text(json.dumps({"start": [0], "end": [1], "text": ["stir"]}))
    result = read_captions(tmp_path / "caps")
    assert list(result.captions) == ["ok"] and "nested too deeply" in result.stats.bad_files[0]
    with pytest.raises(UserError, match="nested too deeply"):
        read_captions(tmp_path / "caps" / "deep.json")


def test_export_and_text_encoder_configs(tmp_path):
    from stg_cli.backbones import load_text_from
    from stg_cli.models.export import load_export

    _write(tmp_path / "export" / "config.json")
    (tmp_path / "export" / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="config.json"):
        load_export(tmp_path / "export")
    _write(tmp_path / "text" / "text_encoder.json")
    with pytest.raises(UserError, match="text_encoder.json"):
        load_text_from(tmp_path / "text")
