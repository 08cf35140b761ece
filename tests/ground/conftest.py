"""Fixtures for the grounding tests: a random-initialised export and a generated video."""

from __future__ import annotations

from pathlib import Path

import pytest
from ground_helpers import make_export, make_video


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    return make_export(tmp_path_factory.mktemp("run") / "export")


@pytest.fixture(scope="session")
def small_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4")
