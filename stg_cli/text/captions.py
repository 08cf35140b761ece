"""Loading ASR captions: HowTo100M JSON, per-video CSV, SRT and WebVTT.

Accepted inputs (times in seconds):

* HowTo100M JSON ``{video_id: {"start": [...], "end": [...], "text": [...]}}`` (one file for many
  videos), or a per-video ``<video_id>.json`` holding ``{"start": [...], "end": [...],
  "text": [...]}``;
* CSV with the header ``start,end,text`` (HowTo100M's per-video files, ``<video_id>.csv``), or one
  CSV for many videos with a ``video_id`` column (``video_id,start,end,text``);
* SubRip ``<video_id>.srt`` and WebVTT ``<video_id>.vtt`` (YouTube's rolling auto-captions, where
  each cue repeats the previous line, are de-duplicated; see :func:`_cues` for what makes a cue);
* a directory of per-video files of these formats (the video id is the file name without its
  suffix; only the files of the requested videos are read, so a folder of HowTo100M's 1.2 M
  per-video CSVs costs nothing for a small subset). Many-video JSON/CSV files are given as files.

Files are read as UTF-8, or as UTF-16 when they start with its byte order mark; a byte order
mark is dropped and any line ending (LF, CRLF, CR) is accepted. Every caption's text is
normalised with :func:`stg_cli.text.normalize.normalize_text`. Captions are skipped, and counted
by reason in :class:`CaptionStats`, when their text is empty after normalisation (``empty``),
garbled (``garbled``: undecodable bytes, control characters or no letter at all), their times are
missing, unparsable, negative, not finite or end before start (``bad_time``), or they repeat the
previous cue of a rolling WebVTT (``duplicate``).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stg_cli.errors import UserError
from stg_cli.text.normalize import normalize_text

CAPTION_SUFFIXES = (".json", ".csv", ".srt", ".vtt")


@dataclass(frozen=True)
class Caption:
    """One narration line: ``start`` ≤ ``end`` seconds and its normalised ``text``."""

    start: float
    end: float
    text: str


@dataclass
class CaptionStats:
    """How many captions were kept and why the others were skipped, over all loaded videos."""

    videos: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → count
    unmatched: int = 0  # videos in the caption source that were not asked for
    bad_files: list[str] = field(default_factory=list)  # "path: reason"

    def to_dict(self) -> dict:
        return {
            "videos": self.videos,
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "unmatched_videos": self.unmatched,
            "bad_files": list(self.bad_files),
        }


@dataclass
class CaptionSet:
    captions: dict[str, list[Caption]]
    stats: CaptionStats


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# captions past this many seconds (about 116 days) are bad times: the store keeps times as
# float32, where 1e300 would become inf
MAX_SECONDS = 1e7
_LETTER = re.compile(r"[^\W\d_]")


def _clean(raw_start: object, raw_end: object, raw_text: object, stats: CaptionStats) -> Caption | None:
    try:
        start, end = _seconds(raw_start), _seconds(raw_end)
    except (TypeError, ValueError):
        stats.skipped["bad_time"] += 1
        return None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start or end > MAX_SECONDS:
        stats.skipped["bad_time"] += 1
        return None
    text = "" if raw_text is None else str(raw_text)
    if isinstance(raw_text, float) and math.isnan(raw_text):
        text = ""
    if "\ufffd" in text or _CONTROL.search(text):
        stats.skipped["garbled"] += 1
        return None
    normalised = normalize_text(text)
    if not normalised:
        stats.skipped["empty"] += 1
        return None
    if not _LETTER.search(normalised):
        stats.skipped["garbled"] += 1
        return None
    stats.kept += 1
    return Caption(start, end, normalised)


_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:[.,]\d+)?)$")


def _seconds(value: object) -> float:
    """Seconds from a number, a numeric string or an ``[HH:]MM:SS[.,]mmm`` timestamp."""
    if isinstance(value, bool) or value is None:
        raise TypeError("not a time")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    match = _TIMESTAMP.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds.replace(",", "."))
    return float(text)


def _read_text(path: Path) -> str:
    """The text of ``path``: UTF-8, or UTF-16 when it starts with a UTF-16 byte order mark (as
    Windows editors save subtitles); a byte order mark is dropped, and bytes that do not decode
    become U+FFFD, which marks their captions garbled."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _from_columns(entry: object, stats: CaptionStats) -> list[Caption]:
    if not isinstance(entry, dict) or not all(key in entry for key in ("start", "end", "text")):
        raise ValueError('expected {"start": [...], "end": [...], "text": [...]}')
    starts, ends, texts = entry["start"], entry["end"], entry["text"]
    if not all(isinstance(column, list) for column in (starts, ends, texts)):
        raise ValueError("start, end and text must be lists")
    if not len(starts) == len(ends) == len(texts):
        raise ValueError(f"start, end, text lengths differ ({len(starts)}, {len(ends)}, {len(texts)})")
    out = [_clean(s, e, t, stats) for s, e, t in zip(starts, ends, texts)]
    return [caption for caption in out if caption is not None]


def _parse_json(path: Path, stats: CaptionStats, video_ids: set[str] | None) -> dict[str, list]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if isinstance(data, dict) and all(key in data for key in ("start", "end", "text")):
        return {path.stem: _from_columns(data, stats)}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object {video_id: {start, end, text}}")
    out = {}
    for video_id, entry in data.items():
        if video_ids is not None and video_id not in video_ids:
            stats.unmatched += 1
            continue
        try:
            out[str(video_id)] = _from_columns(entry, stats)
        except ValueError as error:
            stats.bad_files.append(f"{path} [{video_id}]: {error}")
    return out


def _parse_csv(path: Path, stats: CaptionStats, video_ids: set[str] | None) -> dict[str, list]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    fields = [name.strip().lower() for name in reader.fieldnames or []]
    reader.fieldnames = fields
    if not {"start", "end", "text"} <= set(fields):
        raise ValueError(f"CSV header must contain start,end,text (found {','.join(fields)})")
    multi = "video_id" in fields
    out: dict[str, list[Caption]] = {}
    if not multi:
        out[path.stem] = []
    unmatched: set[str] = set()
    for row in reader:
        video_id = str(row.get("video_id") or "").strip() if multi else path.stem
        if multi and not video_id:
            stats.skipped["no_video_id"] += 1
            continue
        if video_ids is not None and video_id not in video_ids:
            unmatched.add(video_id)
            continue
        caption = _clean(row.get("start"), row.get("end"), row.get("text"), stats)
        bucket = out.setdefault(video_id, [])
        if caption is not None:
            bucket.append(caption)
    stats.unmatched += len(unmatched) if multi else 0
    return out


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CUE_TIME = re.compile(
    r"^\s*((?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d+)?)\s*-->\s*((?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d+)?)"
)


def _cues(text: str) -> Iterator[tuple[str, str, list[str]]]:
    """(start, end, text lines) of each SRT/WebVTT cue, blank lines left out.

    A cue is its time line and the lines after it up to the first empty line. A line of spaces
    does not end it (YouTube's auto-captions put one in most cues; WebVTT only ends a cue at an
    empty line), and a time line always starts the next cue, so cues separated by such lines stay
    apart, the next cue's identifier (the line just before its time line) not taken as text.
    Between an empty line and the next time line nothing is cue text: the WebVTT header, NOTE,
    STYLE and REGION blocks, cue identifiers.
    """
    start: str | None = None
    end = ""
    lines: list[str] = []
    for line in [*_LINE_BREAK.split(text), ""]:  # the empty line at the end closes the last cue
        match = _CUE_TIME.match(line)
        if match or not line:
            if start is not None:
                if match and lines and lines[-1].strip():
                    lines.pop()  # the identifier of the cue that starts here
                yield start, end, [text_line for text_line in lines if text_line.strip()]
            start, end = (match.group(1), match.group(2)) if match else (None, "")
            lines = []
        elif start is not None:
            lines.append(line)


def _parse_subtitles(path: Path, stats: CaptionStats) -> dict[str, list]:
    text = _read_text(path)
    is_vtt = path.suffix.lower() == ".vtt"
    if is_vtt and not text.lstrip().startswith("WEBVTT"):
        raise ValueError("a WebVTT file must start with WEBVTT")
    captions = []
    previous: list[str] = []
    found = False
    for start, end, lines in _cues(text):
        found = True
        if is_vtt:
            # rolling auto-captions repeat the previous cue's lines before the new words
            seen = {normalize_text(line) for line in previous}
            previous = lines
            fresh = [line for line in lines if normalize_text(line) not in seen]
            if lines and not fresh:
                stats.skipped["duplicate"] += 1
                continue
            lines = fresh
        caption = _clean(start, end, " ".join(lines), stats)
        if caption is not None:
            captions.append(caption)
    if not found and text.strip() and text.strip() != "WEBVTT":
        raise ValueError("no cue with a 'start --> end' time line")
    return {path.stem: captions}


def _parse_file(path: Path, stats: CaptionStats, video_ids: set[str] | None) -> dict[str, list]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _parse_json(path, stats, video_ids)
    if suffix == ".csv":
        return _parse_csv(path, stats, video_ids)
    if suffix in (".srt", ".vtt"):
        if video_ids is not None and path.stem not in video_ids:
            return {}
        return _parse_subtitles(path, stats)
    raise ValueError(f"unknown caption format {suffix!r} (use {', '.join(CAPTION_SUFFIXES)})")


def read_captions(path: str | os.PathLike, video_ids: Iterable[str] | None = None) -> CaptionSet:
    """Captions of every video in a caption file or directory, with skip counts.

    ``video_ids`` restricts loading to these videos. A file of a directory that cannot be parsed is
    listed in ``stats.bad_files`` and the others are still read; a single unreadable file, or a
    directory with no caption file, raises UserError. Captions are sorted by start time.
    """
    path = Path(path)
    wanted = None if video_ids is None else {str(video_id) for video_id in video_ids}
    stats = CaptionStats()
    out: dict[str, list[Caption]] = {}
    if not path.exists():
        raise UserError(f"captions not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CAPTION_SUFFIXES)
        if not files:
            raise UserError(f"no caption files ({', '.join(CAPTION_SUFFIXES)}) in {path}")
        if wanted is not None:
            stats.unmatched += len({p.stem for p in files} - wanted)
            files = [p for p in files if p.stem in wanted]
    else:
        files = [path]
    for file in files:
        try:
            parsed = _parse_file(file, stats, wanted)
        except (ValueError, OSError, csv.Error) as error:  # csv.Error: e.g. a field past the size limit
            if not path.is_dir():
                raise UserError(f"cannot read captions {file}: {error}") from None
            stats.bad_files.append(f"{file}: {error}")
            continue
        for video_id, captions in parsed.items():
            if wanted is not None and video_id not in wanted:
                stats.unmatched += 1
                continue
            out.setdefault(video_id, []).extend(captions)
    for video_id in out:
        out[video_id].sort(key=lambda caption: (caption.start, caption.end))
    stats.videos = len(out)
    return CaptionSet(out, stats)


def load_captions(
    path_or_dir: str | os.PathLike, video_ids: Iterable[str] | None = None
) -> dict[str, list[Caption]]:
    """``{video_id: [Caption, ...]}`` from a caption file or folder (see :func:`read_captions`)."""
    return read_captions(path_or_dir, video_ids).captions
