"""Every file stg writes: atomic, never through a symlink, readable like the user's own files."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from stg_cli import files


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_written_files_follow_the_umask(tmp_path, umask_022):
    assert mode(files.write_json(tmp_path / "a.json", {"a": 1})) == 0o644
    os.umask(0o077)
    assert mode(files.write_text(tmp_path / "b.txt", "b")) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "p.json"
    files.write_json(path, {"ok": 1})
    with pytest.raises(ValueError):
        files.write_json(path, {"bad": float("nan")}, allow_nan=False)
    with pytest.raises(RuntimeError), files.atomic_path(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer died")
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path, umask_022):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("config.json", "weights.bin"):
        (out / name).symlink_to(outside)
    files.write_json(out / "config.json", {"a": 1})
    with files.atomic_path(out / "weights.bin", durable=True) as temporary:
        temporary.write_bytes(b"w")
    assert outside.read_text() == "keep me"
    assert not (out / "config.json").is_symlink() and json.loads((out / "config.json").read_text()) == {
        "a": 1
    }
    assert (out / "weights.bin").read_bytes() == b"w" and mode(out / "weights.bin") == 0o644


def test_appends_refuse_a_symlink(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    files.append_text(tmp_path / "log.jsonl", "1\n")
    files.append_text(tmp_path / "log.jsonl", "2\n")
    assert (tmp_path / "log.jsonl").read_text() == "1\n2\n"
    (tmp_path / "link.jsonl").symlink_to(outside)
    with pytest.raises(OSError):
        files.append_text(tmp_path / "link.jsonl", "3\n")
    assert outside.read_text() == "keep me"


def test_temporary_names_are_hidden_and_match_no_pattern_of_the_target(tmp_path):
    with (
        files.atomic_path(tmp_path / "v.json") as plain,
        files.atomic_path(tmp_path / "v.mp4", keep_suffix=True) as suffixed,
    ):
        assert plain.name.startswith(".v.json.") and plain.suffix == ".tmp"
        assert suffixed.name.startswith(".v.mp4.") and suffixed.name.endswith(".tmp.mp4")
        plain.write_text("{}")
        suffixed.write_bytes(b"")
    assert not list(tmp_path.glob("*.tmp*"))


def test_make_readable_opens_a_private_folder(tmp_path, umask_022):
    folder = tmp_path / "staged"
    folder.mkdir(mode=0o700)
    files.make_readable(folder)
    assert mode(folder) == 0o755


def test_inside_keeps_names_in_their_folder(tmp_path):
    from stg_cli.errors import UserError

    (tmp_path / "f").mkdir()
    assert files.inside(tmp_path / "f", "a/b.bin", "x") == tmp_path / "f" / "a" / "b.bin"
    for name in ("/etc/passwd", "../f2/x", "a/../../x"):
        with pytest.raises(UserError, match="outside"):
            files.inside(tmp_path / "f", name, "config.json (vectors)")


def test_a_folder_appears_complete_or_not_at_all(tmp_path, umask_022):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with pytest.raises(RuntimeError), files.atomic_folder(tmp_path / "video", scratch) as work:
        (work / "a.npy").write_bytes(b"a")
        raise RuntimeError("writer died")
    assert not (tmp_path / "video").exists() and not any(scratch.iterdir())
    with files.atomic_folder(tmp_path / "video", scratch, durable=True) as work:
        (work / "a.npy").write_bytes(b"a")
    assert (tmp_path / "video" / "a.npy").read_bytes() == b"a" and mode(tmp_path / "video") == 0o755
    with pytest.raises(FileExistsError), files.atomic_folder(tmp_path / "video", scratch) as work:
        (work / "a.npy").write_bytes(b"b")
    assert (tmp_path / "video" / "a.npy").read_bytes() == b"a" and not any(scratch.iterdir())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep me")
    (tmp_path / "linked").symlink_to(outside)
    with files.atomic_folder(tmp_path / "linked", scratch, replace=True) as work:
        (work / "a.npy").write_bytes(b"c")
    assert (outside / "keep").read_text() == "keep me" and not (tmp_path / "linked").is_symlink()


def test_create_new_never_replaces_nor_follows(tmp_path):
    assert files.create_new(tmp_path / "store.json", b"first", durable=True)
    assert not files.create_new(tmp_path / "store.json", b"second")
    assert (tmp_path / "store.json").read_bytes() == b"first"
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    assert not files.create_new(tmp_path / "link.json", b"x") and not (tmp_path / "target.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "store.json"]


def test_scratch_patterns_match_exactly_the_folders_left_behind(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    left = {}
    for name, tag in (("clip", ""), ("clip.v2", ""), ("clip", ".pack-")):
        with pytest.raises(KeyboardInterrupt), files.atomic_folder(tmp_path / name, scratch, tag=tag) as work:
            left[(name, tag)] = work.name
            (work / "a.npy").write_bytes(b"half")
            os.rename(work, scratch / f"{work.name}.kept")  # what a killed process leaves ...
            raise KeyboardInterrupt
        os.rename(scratch / f"{left[(name, tag)]}.kept", scratch / left[(name, tag)])  # ... as it was
    for (name, tag), entry in left.items():
        matching = {
            key for key, other in left.items() if files.scratch_pattern(re.escape(name), tag).fullmatch(other)
        }
        assert matching == {(name, tag)}, entry
    assert files.remove_scratch(scratch, files.scratch_pattern(re.escape("clip"))) == [left[("clip", "")]]
    assert sorted(p.name for p in scratch.iterdir()) == sorted(
        [left[("clip.v2", "")], left[("clip", ".pack-")]]
    )


def test_a_discarded_folder_is_never_seen_half_removed(tmp_path, monkeypatch):
    scratch, folder = tmp_path / "tmp", tmp_path / "videos" / "clip"
    scratch.mkdir()
    folder.mkdir(parents=True)
    for index in range(5):
        (folder / f"{index}.npy").write_bytes(b"x")
    real_rmtree = files.shutil.rmtree

    def killed(path, *args, **kwargs):  # dies after deleting two files
        for item in sorted(Path(path).iterdir())[:2]:
            item.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        files.discard_folder(folder, scratch, ".gone-")
    monkeypatch.setattr(files.shutil, "rmtree", real_rmtree)
    assert not folder.exists()
    (left,) = scratch.iterdir()
    assert files.scratch_pattern(r"[a-z]+", ".gone-").fullmatch(left.name) and len(list(left.iterdir())) == 3
    assert files.remove_scratch(scratch, files.scratch_pattern(r"[a-z]+", ".gone-")) == [left.name]
    # a symlink is removed, never followed; a missing folder is no error
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("x")
    (tmp_path / "videos" / "link").symlink_to(target)
    files.discard_folder(tmp_path / "videos" / "link", scratch, ".gone-")
    files.discard_folder(tmp_path / "videos" / "missing", scratch, ".gone-")
    assert (
        (target / "keep").exists() and not any((tmp_path / "videos").iterdir()) and not any(scratch.iterdir())
    )
