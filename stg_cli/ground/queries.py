"""Query files for ``stg ground``: one pool of free-text action queries per video.

Queries may also be given directly (``--query``): :func:`gather_queries`; or, for trimmed
grounding, be the labels of each video's ground-truth segments: :func:`queries_of_segments`.

Two formats are read:

- a text file (``q.txt``): one query per line, the same pool for every video; blank lines and
  lines starting with ``#`` are ignored, surrounding white space is stripped and a query
  repeated later in the file is kept once, at its first position;
- a ``vid2step.json``-style file ``{video_id: [step, ...]}``: a pool per video. The entry
  ``"background"`` names the background class (what a frame is when no step happens), so it is
  not a query. Videos missing from the file are an error when they are grounded;
- a segment file (``seg.json``, ``ground_seg.json``: ``{video_id: [{"segment": [start, end],
  "sentence": step, ...}, ...]}``): a pool per video of its annotated steps, each once, in order
  of first start, underscores read as spaces (``beat_egg`` → ``beat egg``, as the authors' code
  reads them). This is MiningYouTube's protocol: every step of ``seg.json`` has its query,
  while ``vid2step.json`` lacks 1,835 of its 5,132 steps.

A file is read as JSON when its name ends in ``.json`` or its first non-blank character is
``{``; otherwise as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stg_cli.errors import UserError

BACKGROUND = "background"


@dataclass(frozen=True)
class QuerySet:
    """Queries for the videos of one run.

    Attributes:
        source: where they came from, for messages: the file or ``--query``.
        shared: the pool used for every video (a text file), or None.
        per_video: video id → pool (a ``vid2step.json`` file); empty for a text file.
    """

    source: str
    shared: tuple[str, ...] | None = None
    per_video: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def for_video(self, video_id: str) -> list[str]:
        """The pool of ``video_id``.

        Raises:
            UserError: the file gives pools per video and has none (or an empty one) for it.
        """
        if self.shared is not None:
            return list(self.shared)
        pool = self.per_video.get(video_id)
        if pool is None:
            raise UserError(f"{self.source}: no queries for video {video_id!r}")
        if not pool:
            raise UserError(f"{self.source}: video {video_id!r} has no queries besides background")
        return list(pool)

    @property
    def all_queries(self) -> list[str]:
        """Every distinct query of the file, in file order."""
        if self.shared is not None:
            return list(self.shared)
        return unique(query for pool in self.per_video.values() for query in pool)


def unique(queries: Iterable[str]) -> list[str]:
    """``queries`` stripped, without empty strings, each kept once at its first position."""
    seen: dict[str, None] = {}
    for query in queries:
        text = query.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def parse_query_lines(text: str) -> list[str]:
    """Queries of a text file's content: one per line, ``#`` comment lines and blanks skipped."""
    lines = (line.strip() for line in text.splitlines())
    return unique(line for line in lines if line and not line.startswith("#"))


def parse_pools(data: object, source: Path) -> dict[str, tuple[str, ...]]:
    """Per-video pools of a decoded ``vid2step.json`` or segment file; ``"background"`` entries
    dropped.

    Raises:
        UserError: naming ``source`` when the content is not ``{video: [str, ...]}``.
    """
    if not isinstance(data, Mapping) or not data:
        raise UserError(f"{source}: expected a JSON object {{video_id: [query, ...]}}")
    pools: dict[str, tuple[str, ...]] = {}
    for video, steps in data.items():
        if isinstance(steps, list) and steps and all(isinstance(step, Mapping) for step in steps):
            steps = _segment_steps(steps, source, str(video))
        if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
            raise UserError(
                f"{source}: video {video!r} must list its queries as strings (or its segments as "
                '{"segment": [start, end], "sentence": step})'
            )
        pools[str(video)] = tuple(query for query in unique(steps) if query.lower() != BACKGROUND)
    return pools


def _segment_steps(segments: list[Mapping], source: Path, video: str) -> list[str]:
    """The steps of a segment file's entries, by start time, underscores read as spaces."""
    timed = []
    for index, entry in enumerate(segments):
        bounds, step = entry.get("segment"), entry.get("sentence")
        if (
            not isinstance(step, str)
            or not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
        ):
            raise UserError(
                f"{source}: video {video!r} segment {index} must be "
                '{"segment": [start, end], "sentence": step}'
            )
        timed.append((float(bounds[0]), index, step.replace("_", " ")))
    return [step for _, _, step in sorted(timed)]


def load_queries(path: Path | str) -> QuerySet:
    """Reads a query file (see the module docstring).

    Raises:
        UserError: the file is missing, unreadable, not valid JSON (a ``.json`` file) or holds no
            query at all.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"query file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read query file {path}: {error}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        except RecursionError:
            raise UserError(f"{path}: JSON nested too deeply") from None
        pools = parse_pools(data, path)
        if not any(pools.values()):
            raise UserError(f"{path}: no queries (only background entries)")
        return QuerySet(source=str(path), per_video=pools)
    queries = parse_query_lines(text)
    if not queries:
        raise UserError(f"{path}: no queries (one per line; blank and # lines are skipped)")
    return QuerySet(source=str(path), shared=tuple(queries))


def queries_of_segments(labels: Mapping[str, Iterable[str]], source: str) -> QuerySet:
    """Each video's pool from the labels of its ground-truth segments (trimmed grounding without
    a query file: every segment's label is its query). ``source`` names them in messages."""
    return QuerySet(source=source, per_video={video: tuple(unique(items)) for video, items in labels.items()})


def gather_queries(path: Path | str | None = None, inline: Iterable[str] = ()) -> QuerySet:
    """Queries of a file (see the module docstring), given ones, or both: the given queries
    are added to every video's pool, after the file's.

    Raises:
        UserError: neither gives a query, or the file is bad (:func:`load_queries`).
    """
    extra = unique(inline)
    if path is None:
        if not extra:
            raise UserError("no queries: give --query TEXT (repeatable) or --queries FILE")
        return QuerySet(source="--query", shared=tuple(extra))
    loaded = load_queries(path)
    if not extra:
        return loaded
    if loaded.shared is not None:
        return QuerySet(loaded.source, shared=tuple(unique([*loaded.shared, *extra])))
    pools = {video: tuple(unique([*pool, *extra])) for video, pool in loaded.per_video.items()}
    return QuerySet(loaded.source, per_video=pools)
