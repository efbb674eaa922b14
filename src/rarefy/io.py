"""Files and run directories, written so that a reader never sees half of one.

Atomic file writes: write to a temporary file in the target's folder, then ``os.replace``.

A reader (or a process that is killed half-way) therefore sees either the old file or
the complete new one, never a partial file. The readers here (:func:`read_json`,
:func:`read_parquet`) and :func:`check_output` turn a missing, unreadable or corrupt file
and an unwritable output location into an :class:`~rarefy.errors.InputError` naming the path.

Modes follow the process umask, as ``open`` and ``mkdir`` do: under umask 022 files are
0644 and run directories 0755 (``tempfile.mkstemp`` / ``mkdtemp`` would make them 0600 /
0700 whatever the umask, which hides shared results from the rest of a group).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import InputError

__all__ = ["atomic_path", "staged_run_dir", "write_json", "write_text", "read_json", "read_parquet", "check_output"]

_ATTEMPTS = 100  # fresh random names tried before giving up (a collision needs 64 equal random bits)


def _create_unique(parent: Path, prefix: str, suffix: str, make: Callable[[Path], None]) -> Path:
    """Create ``parent/<prefix><random><suffix>`` with ``make(path)``, a new name on each collision."""
    for _ in range(_ATTEMPTS):
        path = parent / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            make(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(errno.EEXIST, "no unused temporary name", str(parent))


def _new_file(path: Path) -> None:
    """Create an empty file; mode 0666 minus the umask (the kernel applies it)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_dir(path: Path) -> None:
    """Create a folder; mode 0777 minus the umask."""
    os.mkdir(path, 0o777)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The caller writes the whole file to the yielded path. On an exception the temporary
    file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder, expected a file", file=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(path.parent, f".{path.name}.", ".tmp", _new_file)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def staged_run_dir(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder; on success move its contents into ``run_dir``.

    A new ``run_dir`` appears in one rename. If ``run_dir`` exists already, each staged
    file replaces its namesake atomically (other files there are kept). On an exception
    the staging folder is deleted and ``run_dir`` is left as it was.
    """
    run_dir = Path(run_dir).absolute()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = _create_unique(run_dir.parent, f".{run_dir.name}.", ".staging", _new_dir)
    try:
        yield stage
        if not run_dir.exists():
            os.replace(stage, run_dir)
            return
        for src in sorted(stage.rglob("*")):
            if src.is_file():
                dst = run_dir / src.relative_to(stage)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write text to ``path`` atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _plain(value: Any) -> Any:
    """JSON form of what ``json`` does not know: numpy arrays as lists, numpy (and other) numbers as floats."""
    return value.tolist() if hasattr(value, "tolist") else float(value)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy numbers and arrays as plain numbers and lists)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_plain) + "\n")


def check_output(path: str | os.PathLike[str], *, folder: bool) -> Path:
    """Check, before any work, that an output ``path`` (a folder with ``folder``, else a file) can be written.

    The path may not exist yet (its missing parents are created later); the nearest
    existing ancestor must be a folder in which a file can be created. An existing
    ``path`` must be a folder (``folder``) or not be one (a file). Raises
    :class:`InputError` naming the path; returns it.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise InputError("is a folder, expected a file" if not folder else "exists and is not a folder", file=path)
    ancestor = path if folder and path.exists() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write here: {ancestor} is not a folder", file=path)
    try:  # a real probe: permissions, read-only and virtual file systems alike
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror or exc} ({ancestor})", file=path) from None
    return path


def _readable(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", file=path)
    if path.is_dir():
        raise InputError("is a folder, expected a file", file=path)


def read_json(path: str | os.PathLike[str], kind: type = dict) -> Any:
    """The JSON document in ``path``, which must be a ``kind`` (default: an object); a missing, unreadable
    or malformed file raises :class:`InputError`."""
    path = Path(path)
    _readable(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read JSON: {exc}", file=path) from None
    if not isinstance(data, kind):
        raise InputError(f"expected a JSON {'object' if kind is dict else kind.__name__}, got {type(data).__name__}",
                         file=path)
    return data


def read_parquet(path: str | os.PathLike[str], columns: list[str] | None = None) -> Any:
    """``pandas.read_parquet(path, columns=columns)``; a missing or corrupt file (or a missing column) raises
    :class:`InputError`."""
    import pandas as pd
    import pyarrow as pa

    path = Path(path)
    _readable(path)
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # pyarrow: ArrowInvalid is a ValueError
        raise InputError(f"cannot read Parquet: {exc}", file=path) from None
