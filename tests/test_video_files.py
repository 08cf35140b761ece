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


def test_extract_and_ground_see_the_same_videos_in_a_folder(tmp_path):
    from stg_cli.features.extract import find_videos as extract_videos
    from stg_cli.video_files import find_videos as ground_videos

    (tmp_path / "inner").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in (
        "a.mp4",
        "inner/b.WEBM",
        "inner/c.ogv",
        "inner/d.wmv",
        ".cache/e.mp4",
        ".f.mp4",
        "notes.txt",
        "inner/captions.json",
    ):
        (tmp_path / name).write_bytes(b"x")
    found, ignored, duplicates = extract_videos([tmp_path])
    inputs, problems = ground_videos([tmp_path])
    assert found == {video.video_id: video.path for video in inputs}
    assert sorted(found) == ["a", "b", "c", "d"] and not duplicates and not problems
    assert sorted(ignored) == [str(tmp_path / "inner" / "captions.json"), str(tmp_path / "notes.txt")]
    (tmp_path / "inner" / "a.mkv").write_bytes(b"x")
    assert len(extract_videos([tmp_path])[2]) == 1  # extract: captions are keyed by the id
    assert "a-2" in {video.video_id for video in ground_videos([tmp_path])[0]}
