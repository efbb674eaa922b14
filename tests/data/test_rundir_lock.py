"""data.rundir: the run-directory lock (re-entrant, released on errors, a killed holder taken over)
and the output check of the jobs that create a run directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rarefy.data.rundir import HOLDER, KINDS, LOCK, MARKER, check_out_dir, read_holder, read_marker, run_dir_lock
from rarefy.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_lock_records_the_holder_and_releases_it(tmp_path):
    out = tmp_path / "run"
    with run_dir_lock(out, "rarefy simulate", kind="simulate") as path:
        assert path == out.absolute()
        holder = read_holder(out)
        assert holder["job"] == "rarefy simulate" and holder["pid"] == os.getpid()
        assert holder["host"] == socket.gethostname() and holder["started"] > 0
        assert read_marker(out) == "simulate"
    assert read_holder(out) is None and not (out / HOLDER).exists()


def test_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with run_dir_lock(tmp_path / "run", "rarefy fit", kind="fit"):
            raise RuntimeError("boom")
    with run_dir_lock(tmp_path / "run", "rarefy fit", kind="fit"):  # free again
        assert read_holder(tmp_path / "run")["job"] == "rarefy fit"


def test_nested_use_in_one_thread_takes_the_lock_once(tmp_path):
    out = tmp_path / "run"
    with run_dir_lock(out, "rarefy run", kind="run"):
        with run_dir_lock(out, "rarefy train"):
            with run_dir_lock(out, "rarefy report"):
                assert read_holder(out)["job"] == "rarefy run"
        assert read_holder(out)["job"] == "rarefy run"  # the inner exits kept it
    assert read_holder(out) is None


def test_another_thread_is_refused(tmp_path):
    out = tmp_path / "run"
    errors: list[str] = []

    def other() -> None:
        try:
            with run_dir_lock(out, "rarefy suggest"):
                pass
        except InputError as exc:
            errors.append(str(exc))

    with run_dir_lock(out, "rarefy run", kind="run"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert errors and "is in use by rarefy run in another thread of this process" in errors[0]


def test_a_folder_that_is_no_run_directory_gets_no_lock_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with run_dir_lock(tmp_path, "rarefy report"):
        pass
    with run_dir_lock(tmp_path / "missing", "rarefy denoise"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


HOLD_AND_WAIT = textwrap.dedent("""
    import sys
    from rarefy.data.rundir import run_dir_lock
    with run_dir_lock(sys.argv[1], "rarefy simulate", kind="simulate"):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_a_killed_holder_is_taken_over_and_its_holder_file_replaced(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, str(out)], env=ENV, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        with pytest.raises(InputError) as err:
            with run_dir_lock(out, "rarefy simulate", kind="simulate"):
                pass
        message = str(err.value)
        assert message.startswith(f"run directory {out} is in use by rarefy simulate, pid {proc.pid} on host "
                                  f"{socket.gethostname()} since ")
        assert "\n" not in message
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert read_holder(out)["pid"] == proc.pid  # left behind by the killed process
    with run_dir_lock(out, "rarefy run", kind="run"):
        holder = read_holder(out)
        assert holder["pid"] == os.getpid() and holder["job"] == "rarefy run"
    assert read_holder(out) is None


def test_a_holder_file_without_a_lock_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / HOLDER).write_text(json.dumps({"job": "rarefy simulate", "pid": 1, "host": "elsewhere", "started": 0}))
    with run_dir_lock(out, "rarefy simulate", kind="simulate"):
        assert read_holder(out)["pid"] == os.getpid()


# ------------------------------------------------------------- check_out_dir
def test_missing_and_empty_directories_are_accepted_by_every_kind(tmp_path):
    (tmp_path / "empty").mkdir()
    stale = tmp_path / "stale"  # only rarefy's own files: a lock file and another kind's marker
    stale.mkdir()
    (stale / LOCK).touch()
    (stale / MARKER).write_text(json.dumps({"kind": "bench"}))
    for kind in KINDS:
        check_out_dir(tmp_path / "missing", kind)
        check_out_dir(tmp_path / "empty", kind)
        check_out_dir(stale, kind)
    with run_dir_lock(stale, "rarefy fit", kind="fit"):
        assert read_marker(stale) == "fit"


@pytest.mark.parametrize("have, kind, ok", [
    ("simulate", "simulate", True), ("simulate", "run", True), ("run", "simulate", True), ("run", "run", True),
    ("fit", "fit", True), ("infer", "infer", True), ("bench", "bench", True),
    ("simulate", "fit", False), ("run", "fit", False), ("fit", "simulate", False), ("fit", "infer", False),
    ("infer", "fit", False), ("bench", "simulate", False), ("simulate", "bench", False),
])
def test_kinds_share_a_directory_only_by_design(tmp_path, have, kind, ok):
    out = tmp_path / "run"
    with run_dir_lock(out, f"rarefy {have}", kind=have):
        (out / "config.yaml").write_text("seed: 1\n")
    if ok:
        check_out_dir(out, kind)
    else:
        with pytest.raises(InputError, match=f"a run directory of 'rarefy {have}', not of 'rarefy {kind}'"):
            check_out_dir(out, kind)


def test_a_folder_with_files_and_no_marker_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("# mine\n")
    for kind in KINDS:
        with pytest.raises(InputError, match=r"not a rarefy run directory \(no \.rarefy\.run\.json\) and not empty "
                                             r"\(config\.yaml\)"):
            check_out_dir(tmp_path, kind)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="the output is a file, not a run directory"):
        check_out_dir(tmp_path / "a_file", "fit")


@pytest.mark.parametrize("files, kind", [
    (["catalog.sqlite", "config.yaml", "rates.parquet"], "simulate"),
    (["catalog.sqlite", "config.yaml", "result.json"], "run"),
    (["config.yaml", "fit.json", "surrogate/model.json"], "fit"),
    (["config.yaml", "posterior.nc", "summary.json"], "infer"),
    (["bench.json", "bench_meta.json"], "bench"),
])
def test_a_run_directory_from_before_the_marker_is_recognised(tmp_path, files, kind):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    check_out_dir(tmp_path, kind)
    other = "fit" if kind in ("simulate", "run") else "simulate"
    with pytest.raises(InputError, match=f"a run directory of 'rarefy {kind}'"):
        check_out_dir(tmp_path, other)
    with run_dir_lock(tmp_path, f"rarefy {kind}", kind=kind):
        assert read_marker(tmp_path) == kind


def test_a_failed_job_leaves_no_directory_it_created(tmp_path):
    with pytest.raises(InputError, match="bad prior"):
        with run_dir_lock(tmp_path / "new", "rarefy infer", kind="infer"):
            raise InputError("bad prior")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(InputError, match="bad prior"):
        with run_dir_lock(tmp_path / "old", "rarefy infer", kind="infer"):
            raise InputError("bad prior")
    assert (tmp_path / "old").is_dir()  # the user's folder stays
