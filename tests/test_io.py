"""rarefy.io: atomic files and staged run directories (contents, clean-up on failure, modes that honour the
umask); the readers and the output check turn file-system and format problems into one-line InputErrors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from rarefy.errors import InputError
from rarefy.io import atomic_path, check_output, read_json, read_parquet, staged_run_dir, write_json, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_files_and_run_directories_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert _mode(write_text(tmp_path / "a.txt", "x")) == file_mode
    assert _mode(write_json(tmp_path / "sub" / "b.json", {"a": 1})) == file_mode
    with staged_run_dir(tmp_path / "run") as stage:
        write_text(stage / "c.txt", "y")
        (stage / "inner").mkdir()
        write_text(stage / "inner" / "d.txt", "z")
    assert _mode(tmp_path / "run") == dir_mode
    assert _mode(tmp_path / "run" / "c.txt") == file_mode
    assert _mode(tmp_path / "run" / "inner" / "d.txt") == file_mode
    # a staged write into an existing run directory keeps the umask's modes too
    with staged_run_dir(tmp_path / "run") as stage:
        write_text(stage / "e.txt", "w")
    assert _mode(tmp_path / "run" / "e.txt") == file_mode


def test_an_existing_file_is_replaced_with_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o600)
    write_text(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_failed_stage_leaves_no_run_directory(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_run_dir(tmp_path / "run") as stage:
            write_text(stage / "a.txt", "x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_do_not_collide(tmp_path):
    paths = []
    for _ in range(3):
        with atomic_path(tmp_path / "same.txt") as tmp:
            paths.append(tmp)
            assert tmp.exists() and tmp.parent == tmp_path and tmp.name.startswith(".same.txt.")
    assert len(set(paths)) == 3


def test_check_output_accepts_new_and_existing_locations(tmp_path):
    assert check_output(tmp_path / "new" / "deeper" / "run", folder=True) == tmp_path / "new" / "deeper" / "run"
    assert not (tmp_path / "new").exists()  # nothing is created
    check_output(tmp_path, folder=True)
    check_output(tmp_path / "out.json", folder=False)
    (tmp_path / "old.json").write_text("{}")
    check_output(tmp_path / "old.json", folder=False)  # an existing file is replaced


@pytest.mark.parametrize("where, folder, needle", [
    ("file", True, "exists and is not a folder"),
    ("dir", False, "is a folder, expected a file"),
    ("file/below", True, "is not a folder"),
    ("file/below/deeper.json", False, "is not a folder"),
])
def test_check_output_refuses(tmp_path, where, folder, needle):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match=needle) as err:
        check_output(tmp_path / where, folder=folder)
    assert str(tmp_path / where) in str(err.value)


def test_check_output_probes_the_file_system():
    with pytest.raises(InputError, match="cannot write here"):
        check_output("/proc/rarefy-run", folder=True)


@pytest.mark.parametrize("content, needle", [
    (b"", "cannot read JSON"),
    (b"{\"a\": 1", "cannot read JSON"),
    (b"\xd9\xff", "cannot read JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
])
def test_read_json_names_the_file(tmp_path, content, needle):
    path = tmp_path / "result.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as err:
        read_json(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_read_json_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_json(tmp_path / "nothere.json")
    with pytest.raises(InputError, match="is a folder"):
        read_json(tmp_path)


def test_read_parquet(tmp_path):
    path = tmp_path / "rates.parquet"
    pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}).to_parquet(path)
    assert read_parquet(path, columns=["a"])["a"].tolist() == [1.0, 2.0]
    with pytest.raises(InputError, match="rates.parquet: cannot read Parquet"):
        read_parquet(path, columns=["nope"])
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(InputError, match="rates.parquet: cannot read Parquet"):
        read_parquet(path)
    path.write_bytes(b"")
    with pytest.raises(InputError, match="rates.parquet: cannot read Parquet"):
        read_parquet(path)
