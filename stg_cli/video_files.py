"""Finding video files: what a folder of videos means, the same for every command that reads one.

A folder is searched recursively for files whose suffix is in :data:`VIDEO_SUFFIXES` (any case),
hidden files and folders skipped (:func:`list_folder`); a video's id is its file stem. ``stg
extract``, ``stg ground`` (through :func:`find_videos`), the video-reading priors of
:mod:`stg_cli.metrics.baselines` and ``stg score --videos`` (through :func:`video_paths`) see
the same files in a folder. They differ only in what two files with the same stem mean:
``ground`` names the second ``<stem>-2``, ``extract`` refuses it, because its captions are
keyed by the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stg_cli.errors import UserError

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv"}
)


@dataclass(frozen=True)
class VideoInput:
    """One video to ground: a file, or an id of the feature store (then ``path`` is None)."""

    video_id: str
    path: Path | None


def list_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """The video files under ``folder`` (recursively, by suffix, hidden files and folders
    skipped) and its other visible files, both sorted."""
    videos, others = [], []
    for item in sorted(folder.rglob("*")):
        if not item.is_file() or any(part.startswith(".") for part in item.relative_to(folder).parts):
            continue
        (videos if item.suffix.lower() in VIDEO_SUFFIXES else others).append(item)
    return videos, others


def find_videos(
    arguments: Sequence[str | Path], store_ids: Sequence[str] = ()
) -> tuple[list[VideoInput], list[tuple[str, str]]]:
    """Videos named by the command line: files, folders (searched recursively for video files by
    suffix, hidden entries skipped) and, with a feature store, ids of its videos.

    Ids are file stems; another file with a stem already seen gets ``-2``, ``-3``... A file or a
    store id named twice is grounded once. Returns the inputs and ``(argument, reason)`` for
    arguments that name nothing.
    """
    inputs: list[VideoInput] = []
    problems: list[tuple[str, str]] = []
    used: set[str] = set()
    seen_paths: set[Path] = set()
    known_ids = set(store_ids)

    def add(video_id: str, path: Path | None) -> None:
        if path is None and video_id in used:
            return
        if path is not None:
            resolved = path.resolve()
            if resolved in seen_paths:
                return
            seen_paths.add(resolved)
        unique, counter = video_id, 1
        while unique in used:
            counter += 1
            unique = f"{video_id}-{counter}"
        used.add(unique)
        inputs.append(VideoInput(unique, path))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found, _ = list_folder(path)
            if not found:
                problems.append((str(argument), "no video files in this folder"))
            for item in found:
                add(item.stem, item)
        elif path.is_file():
            add(path.stem, path)
        elif str(argument) in known_ids:
            add(str(argument), None)
        else:
            problems.append((str(argument), "no such file or folder"))
    return inputs, problems


def video_paths(folder: Path | str) -> dict[str, Path]:
    """``{video_id: path}`` of the videos in ``folder``, ids as :func:`find_videos` gives them.

    Raises:
        UserError: when ``folder`` is not a folder or holds no video file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of videos")
    inputs, problems = find_videos([folder])
    if problems:
        raise UserError(f"{folder}: {problems[0][1]}")
    return {video.video_id: video.path for video in inputs}
