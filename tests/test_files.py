"""Every file stg writes: atomic, never through a symlink, readable like the user's own files."""

from __future__ import annotations

import json
import os
import stat

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
