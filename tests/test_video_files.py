"""Finding video files: a folder → {video id: path}, by the rule every command uses."""

from __future__ import annotations

import pytest

from stg_cli.errors import UserError
from stg_cli.video_files import video_paths


def test_video_paths_maps_stems_recursively_and_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "inner").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in ("a.mp4", "inner/b.WEBM", "inner/a.mkv", ".cache/c.mp4", ".d.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert video_paths(tmp_path) == {
        "a": tmp_path / "a.mp4",
        "a-2": tmp_path / "inner" / "a.mkv",
        "b": tmp_path / "inner" / "b.WEBM",
    }


def test_video_paths_needs_a_folder_with_videos(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        video_paths(tmp_path / "missing")
    with pytest.raises(UserError, match="no video files"):
        video_paths(tmp_path)
