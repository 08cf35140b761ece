"""How stg writes files: every file it creates or appends to goes through this module.

- **Atomically**: a file is written under a temporary name in its folder and renamed over the
  target, so an interrupted write leaves the old file or none, never half of one.
- **Never through a symlink**: the rename replaces a symlink standing at the target by the new
  file, and appends refuse a symlink (``O_NOFOLLOW``); the file a link points to is never
  written.
- **Readable like any file the user makes**: mode ``0o666`` less the umask (the temporary files
  of :mod:`tempfile` are ``0o600``, which would hide predictions and exports from other users).
- ``durable=True`` also flushes the file and its folder to disk before returning (checkpoints,
  the feature store's manifest): after a crash of the machine, the file is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stg_cli.errors import UserError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 120


def safe_name(video_id: str) -> str:
    """A file or folder name for ``video_id``: letters, digits, ``.``, ``_`` and ``-`` only.

    Ids that are already safe (YouTube ids, ordinary file stems) are kept as they are; any other
    id has its unsafe characters replaced by ``_``, is cut to a bounded length and gets 8 hex
    digits of its SHA-256, so that two different ids never share a name. A leading dot is
    replaced too (no hidden files, no ``..``).
    """
    if (
        video_id
        and len(video_id) <= _MAX_NAME
        and not _UNSAFE.search(video_id)
        and not video_id.startswith(".")
    ):
        return video_id
    cleaned = _UNSAFE.sub("_", video_id)[:_MAX_NAME].lstrip(".") or "video"
    digest = hashlib.sha256(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def make_readable(path: Path | str) -> None:
    """Gives ``path`` the permissions of a file (``0o666``) or folder (``0o777``) the user
    creates, less the umask: for a folder made with :func:`tempfile.mkdtemp` (``0o700``) before
    it is renamed into place."""
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: Path | str, durable: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (``torch.save``, a
    video encoder, ``savefig``); when the block ends without an error the file gets the user's
    permissions and is renamed to ``path``, otherwise it is removed. Creates ``path``'s folder.

    The temporary name is hidden and ends with ``.tmp``, so that a leftover of a killed process
    never matches a pattern such as ``*.json``; ``keep_suffix`` ends it with ``.tmp`` and
    ``path``'s suffix instead, for writers that choose the format by the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if durable:
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        make_readable(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        _fsync_folder(path.parent)


def create_new(path: Path | str, data: bytes, durable: bool = False) -> bool:
    """Writes ``data`` to ``path`` only if nothing is there yet, atomically: the file is written
    under a temporary name and hard-linked to ``path``, which fails when ``path`` exists (even
    as a symlink, which is never followed), also between machines on a shared file system
    where file locks may be missing. Returns whether this call created ``path``."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as written:
            written.write(data)
            if durable:
                written.flush()
                os.fsync(written.fileno())
        make_readable(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        _fsync_folder(path.parent)
    return True


#: the random part :func:`tempfile.mkdtemp` gives a scratch folder's name (8 characters)
_SCRATCH_TAIL = r"\.[a-z0-9_]{8}"


def scratch_pattern(target: str, tag: str = "") -> re.Pattern[str]:
    """The names that :func:`atomic_folder` and :func:`discard_folder` give their folders in
    ``scratch`` (``<tag><name>.<8 random characters>``) for a ``path`` whose name matches the
    regular expression ``target`` (``re.escape(name)`` for one name); use ``fullmatch``.

    Exact: the scratch folder of one name never matches the pattern of another (``clip`` and
    ``clip.v2`` included), because the random part has a fixed length.
    """
    return re.compile(f"{re.escape(tag)}(?:{target}){_SCRATCH_TAIL}")


def remove_scratch(scratch: Path | str, pattern: re.Pattern[str]) -> list[str]:
    """Removes the entries of ``scratch`` whose whole name matches ``pattern`` (see
    :func:`scratch_pattern`): what killed processes left there. A symlink is removed, never
    followed. Returns the names removed, sorted."""
    scratch = Path(scratch)
    removed = []
    for entry in sorted(scratch.iterdir()) if scratch.is_dir() else ():
        if not pattern.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def discard_folder(path: Path | str, scratch: Path | str, tag: str) -> None:
    """Removes the folder ``path`` so that it is never seen half-removed: it is renamed into
    ``scratch`` (same file system) as ``<tag><name>.<8 random characters>`` at once, then
    deleted there; a killed process leaves it in ``scratch``, where
    ``remove_scratch(scratch, scratch_pattern(..., tag))`` finds it. A symlink at ``path`` is
    removed, never followed; a missing ``path`` is no error.
    """
    path = Path(path)
    if path.is_symlink():
        path.unlink()
        return
    # an empty folder that rename(2) replaces: a name no other process takes meanwhile
    holder = Path(tempfile.mkdtemp(prefix=f"{tag}{path.name}.", dir=scratch))
    try:
        os.replace(path, holder)
    except FileNotFoundError:
        pass
    shutil.rmtree(holder, ignore_errors=True)


@contextmanager
def atomic_folder(
    path: Path | str, scratch: Path | str, durable: bool = False, replace: bool = False, tag: str = ""
) -> Iterator[Path]:
    """A fresh private folder inside ``scratch`` (on ``path``'s file system) for the block to
    fill; when the block ends without an error the folder gets the user's permissions and is
    renamed to ``path`` at once, so that ``path`` is absent or complete, never partial. On an
    error the folder is removed; a killed process leaves it in ``scratch``, named
    ``<tag><name>.<8 random characters>`` (:func:`scratch_pattern` matches it exactly).

    ``durable`` flushes every file of the folder and the folder itself before the rename, and
    ``path``'s parent after it: after a crash of the machine, ``path`` is complete or absent.
    ``replace`` removes a folder already at ``path`` first (a symlink there is removed, never
    followed); without it an existing ``path`` raises FileExistsError and the new folder is
    dropped.
    """
    path = Path(path)
    work = Path(tempfile.mkdtemp(prefix=f"{tag}{path.name}.", dir=scratch))
    try:
        yield work
        if durable:
            for item in work.iterdir():
                if item.is_file() and not item.is_symlink():
                    with open(item, "rb") as written:
                        os.fsync(written.fileno())
            _fsync_folder(work)
        make_readable(work)
        if replace and path.is_symlink():
            path.unlink()
        elif replace and path.exists():
            shutil.rmtree(path)
        try:
            os.replace(work, path)
        except OSError:  # rename(2) onto a non-empty folder: ENOTEMPTY or EEXIST
            if path.exists() or path.is_symlink():
                raise FileExistsError(f"{path} exists") from None
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if durable:
        _fsync_folder(path.parent)


def write_bytes(path: Path | str, data: bytes, durable: bool = False) -> Path:
    """Writes ``data`` to ``path`` atomically (see the module); returns ``path``."""
    with atomic_path(path, durable) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str, durable: bool = False) -> Path:
    """Writes ``text`` as UTF-8, line ends as they are, to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), durable)


def write_json(
    path: Path | str, data: object, indent: int | None = 2, allow_nan: bool = True, durable: bool = False
) -> Path:
    """Writes ``data`` as JSON with a final newline to ``path`` atomically. ``allow_nan=False``
    refuses NaN and infinities (``ValueError``) instead of writing JSON that strict readers
    reject."""
    return write_text(path, json.dumps(data, indent=indent, allow_nan=allow_nan) + "\n", durable)


def inside(folder: Path | str, name: str, what: str) -> Path:
    """``folder / name`` for a file name read from a file in ``folder`` (an export's config):
    it must stay inside ``folder`` once ``..`` and links are resolved, so that a tampered config
    cannot make stg read any other file.

    Raises:
        UserError: naming ``what`` holds the name, when it leads outside ``folder``.
    """
    folder = Path(folder)
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UserError(f"{what} names {name!r}, outside {folder}: refused")
    return path


def append_text(path: Path | str, text: str) -> None:
    """Appends ``text`` (UTF-8) to ``path``, creating it with the user's permissions.

    Raises:
        OSError: when ``path`` is a symlink (``ELOOP``): a log is never appended through one.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    with os.fdopen(descriptor, "ab") as handle:
        handle.write(text.encode("utf-8"))
