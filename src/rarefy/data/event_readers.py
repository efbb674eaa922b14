"""Readers of event-level files: CSV, Parquet, HDF5 (h5py or pandas HDFStore) and ROOT.

:func:`read_event_frame` reads a file's raw columns into a DataFrame; :func:`read_events`
then renames columns through a mapping (file name -> rarefy name), picks θ, φ, outcome and
weight, and returns a validated :class:`~rarefy.data.events.EventTable`.

HDF5 layouts understood (chosen automatically):

* **pandas HDFStore** (``DataFrame.to_hdf``, fixed or table format): read with h5py,
  never unpickling anything: numeric, boolean, date and fixed-width string columns are
  read; columns pandas stored as pickled Python objects (object columns of the fixed
  format) are refused with an InputError. ``key`` picks the table when the file holds
  several.
* **matrix layout** (as in the public RESuM release): one file per run with a dataset
  ``phi`` of shape (n, p), a dataset ``target`` of shape (n,) and optionally ``theta``
  of shape (d,), (1, d) or (n, d). Column names come from the string attributes (on the
  file or on the dataset) ``phi_labels``, ``theta_headers`` and ``target_label``; without
  them the columns are called ``phi_0 ...``, ``theta_0 ...`` and ``target``.
* **flat layout**: equally long 1-D datasets in the root group (or in group ``key``),
  one column each.

ROOT files are read with :mod:`uproot` (the ``root`` extra): ``key`` names the TTree (or
RNTuple); a file with a single one needs no key. Only flat (one value per entry) branches
are read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TypedDict, Unpack

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import InputError
from ..optional import require
from .events import FIDELITY, OUTCOME, RUN_ID, WEIGHT, EventTable
from .readers import read_frame

__all__ = ["EventMapping", "read_events", "read_event_frame", "EVENT_SUFFIXES"]

log = logging.getLogger(__name__)

EVENT_SUFFIXES = {
    ".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".root": "root",
}


def read_event_frame(path: str | os.PathLike[str], key: str | None = None) -> pd.DataFrame:
    """Read the raw columns of an event file (format from the suffix) into a DataFrame."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    kind = EVENT_SUFFIXES.get(path.suffix.lower())
    if kind in ("csv", "parquet"):
        return read_frame(path)
    if kind == "hdf5":
        return _read_hdf5(path, key)
    if kind == "root":
        return _read_root(path, key)
    raise InputError(f"unknown event file format {path.suffix!r}; use one of {', '.join(sorted(EVENT_SUFFIXES))}",
                     file=path)


class EventMapping(TypedDict, total=False):
    """How a raw event frame becomes an :class:`EventTable` (the keywords of :func:`frame_to_events`).

    ``columns``: rename map, file column name -> rarefy name, applied first (all other
    names are rarefy names). ``theta``: θ columns; one the file lacks is filled from
    ``theta_values`` (the run's design), else it is an error. ``phi``: φ columns (None:
    every remaining numeric column). ``outcome``, ``weight``: the 0/1 outcome column and
    the optional weight column. ``fidelity``, ``run_id``: constants written into those columns.
    """

    columns: Mapping[str, str] | None
    theta: Sequence[str]
    phi: Sequence[str] | None
    outcome: str
    weight: str | None
    fidelity: str | None
    run_id: str | None
    theta_values: Mapping[str, float] | None


def read_events(path: str | os.PathLike[str], *, key: str | None = None, **mapping: Unpack[EventMapping]) -> EventTable:
    """Read an event file into an :class:`EventTable`.

    ``key`` names the HDF5 key/group or ROOT TTree where the file holds several; the
    other keywords (:class:`EventMapping`) say which columns are θ, φ, outcome and weight.
    """
    return frame_to_events(read_event_frame(path, key=key), source=str(path), **mapping)


def frame_to_events(
    frame: pd.DataFrame,
    *,
    source: str | None = None,
    columns: Mapping[str, str] | None = None,
    theta: Sequence[str] = (),
    phi: Sequence[str] | None = None,
    outcome: str = OUTCOME,
    weight: str | None = None,
    fidelity: str | None = None,
    run_id: str | None = None,
    theta_values: Mapping[str, float] | None = None,
) -> EventTable:
    """Map a raw event DataFrame to an :class:`EventTable` (see :func:`read_events`)."""
    frame = frame.rename(columns=dict(columns or {}))
    frame.columns = [str(c) for c in frame.columns]
    if outcome not in frame.columns:
        raise InputError(f"outcome column not found (columns: {', '.join(frame.columns)})", file=source, column=outcome)
    if weight is not None and weight not in frame.columns:
        raise InputError(f"weight column not found (columns: {', '.join(frame.columns)})", file=source, column=weight)
    rename = {outcome: OUTCOME}
    if weight is not None:
        rename[weight] = WEIGHT
    for canonical, chosen in ((OUTCOME, outcome), (WEIGHT, weight)):
        if chosen is not None and chosen != canonical and canonical in frame.columns:
            # another column already carries the canonical name: keep it, under a new name
            frame = frame.rename(columns={canonical: f"{canonical}_orig"})
    frame = frame.rename(columns=rename)
    theta = list(theta)
    for name in theta:
        if name not in frame.columns:
            if theta_values is not None and name in theta_values:
                frame[name] = float(theta_values[name])
            else:
                raise InputError(f"θ column not found (columns: {', '.join(frame.columns)})", file=source, column=name)
    reserved = {*theta, OUTCOME, WEIGHT, FIDELITY, RUN_ID}
    if phi is None:
        phi = [c for c in frame.columns if c not in reserved and pd.api.types.is_numeric_dtype(frame[c])]
    else:
        phi = list(phi)
        for name in phi:
            if name not in frame.columns:
                raise InputError(f"φ column not found (columns: {', '.join(frame.columns)})", file=source, column=name)
    keep = [*theta, *phi, OUTCOME] + [c for c in (WEIGHT, FIDELITY, RUN_ID) if c in frame.columns]
    table = pa.Table.from_pandas(frame[keep].reset_index(drop=True), preserve_index=False)
    events = EventTable(table, theta, phi, source=source)
    return events.with_run(fidelity=fidelity, run_id=run_id)


# -------------------------------------------------------------------- HDF5
def _attr_names(obj: Any, name: str) -> list[str] | None:
    if name not in obj.attrs:
        return None
    value = obj.attrs[name]
    values = np.atleast_1d(value)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_hdf5(path: Path, key: str | None) -> pd.DataFrame:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot open HDF5 file: {exc}", file=path) from None
    with fh:
        pandas_keys = []
        fh.visititems(lambda name, obj: pandas_keys.append(name) if "pandas_type" in obj.attrs else None)
        if pandas_keys:
            return _read_hdfstore(path, fh, key, pandas_keys)
        group = fh if key is None else fh.get(key)
        if group is None or not isinstance(group, h5py.Group):
            raise InputError(f"HDF5 group {key!r} not found", file=path)
        if "phi" in group and isinstance(group["phi"], h5py.Dataset) and group["phi"].ndim == 2:
            return _read_matrix_layout(path, fh, group)
        return _read_flat_layout(path, group)


def _read_hdfstore(path: Path, fh: Any, key: str | None, keys: list[str]) -> pd.DataFrame:
    """A pandas HDFStore table (fixed or table format) read with h5py: numbers and strings only.

    Nothing in the file is unpickled: columns that pandas stored as pickled Python objects
    (object columns of the fixed format, non-string column names) are refused, and the
    store's pickled metadata (the column names of the table format) is decoded by
    :func:`_pickled_literal`, which only accepts plain lists, tuples, strings and numbers.
    """
    import h5py

    tops = sorted({k.split("/")[0] for k in keys})
    if key is None:
        if len(tops) != 1:
            raise InputError(f"HDFStore holds several tables {tops}; name one with 'key'", file=path)
        key = tops[0]
    group = fh.get(key)
    if not isinstance(group, h5py.Group) or "pandas_type" not in group.attrs:
        raise InputError(f"HDFStore key {key!r} not found (keys: {tops})", file=path)
    kind = _text(group.attrs["pandas_type"])
    encoding = _text(group.attrs.get("encoding", b"UTF-8")) or "UTF-8"
    if kind == "frame":
        return _read_fixed_frame(path, key, group, encoding)
    if kind == "series":
        name = _text(group.attrs.get("name", b"N."))
        values = _hdfstore_values(path, key, group, "values", encoding)
        return pd.DataFrame({"0" if name in (None, "N.") else name: values.reshape(-1)})
    if kind in ("frame_table", "series_table"):
        return _read_table_format(path, key, group, encoding)
    raise InputError(f"HDFStore key {key!r} holds a pandas {kind!r}; only DataFrames and Series "
                     "(fixed or table format) are read", file=path)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _refuse_pickled(path: Path, key: str, column: str) -> InputError:
    return InputError(f"HDFStore key {key!r} stores this column as pickled Python objects, which rarefy does not "
                      "load; write it as numbers or fixed-width strings (e.g. to_hdf(..., format='table'))",
                      file=path, column=column)


def _hdfstore_values(path: Path, key: str, group: Any, name: str, encoding: str, column: str | None = None
                     ) -> np.ndarray:
    """One array of a fixed-format store: numbers, booleans, dates or (decoded) fixed-width strings."""
    import h5py

    ds = group.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"HDFStore key {key!r} lacks the dataset {name!r}", file=path)
    if ds.dtype.kind not in "biufS" or "PSEUDOATOM" in ds.attrs or h5py.check_vlen_dtype(ds.dtype) is not None:
        raise _refuse_pickled(path, key, column or name)
    values = np.asarray(ds[...])
    if ds.id.get_type().get_class() == h5py.h5t.BITFIELD:  # how PyTables stores booleans
        values = values.astype(bool)
    value_type = _text(ds.attrs["value_type"]) if "value_type" in ds.attrs else None
    if value_type is not None:
        if not value_type.startswith(("datetime64", "timedelta64")) or ds.dtype.kind not in "iu":
            raise InputError(f"HDFStore key {key!r}: values of type {value_type!r} are not supported",
                             file=path, column=column or name)
        values = values.view(np.dtype(value_type))
    if values.dtype.kind == "S":
        values = np.char.decode(values, encoding).astype(object)
    return values


def _read_fixed_frame(path: Path, key: str, group: Any, encoding: str) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {}
    for b in range(int(group.attrs.get("nblocks", 0))):
        items = _hdfstore_values(path, key, group, f"block{b}_items", encoding, column=f"block{b}_items (column names)")
        names = [str(v) for v in items]
        label = names[0] if len(names) == 1 else f"block{b}_values ({', '.join(names)})"
        values = _hdfstore_values(path, key, group, f"block{b}_values", encoding, column=label)
        values = values.reshape(-1, 1) if values.ndim == 1 else values
        if not int(group[f"block{b}_values"].attrs.get("transposed", 0)):
            values = values.T
        if values.shape[1] != len(names):
            raise InputError(f"HDFStore key {key!r}: block {b} has {values.shape[1]} columns for {len(names)} names",
                             file=path)
        cols.update({n: values[:, j] for j, n in enumerate(names)})
    order = [str(v) for v in _hdfstore_values(path, key, group, "axis0", encoding, column="axis0 (column names)")]
    return pd.DataFrame({n: cols[n] for n in order if n in cols})


def _read_table_format(path: Path, key: str, group: Any, encoding: str) -> pd.DataFrame:
    import h5py

    ds = group.get("table")
    if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
        raise InputError(f"HDFStore key {key!r} lacks its 'table' dataset", file=path)
    try:
        data = ds[...]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read HDFStore key {key!r}: {exc}", file=path) from None
    nan_rep = _text(group.attrs.get("nan_rep", b"nan"))
    cols: dict[str, np.ndarray] = {}
    for field in ds.dtype.names:
        if field == "index":
            continue
        meta = _text(ds.attrs.get(f"{field}_meta", b"N."))
        names = _pickled_literal(ds.attrs.get(f"{field}_kind", b"N."), path, key, f"{field}_kind")
        names = [field] if names is None else names
        if not isinstance(names, list):
            raise InputError(f"HDFStore key {key!r}: the column names of {field!r} are not a list", file=path)
        names = [str(n) for n in names]
        if meta not in ("N.", "str"):
            raise InputError(f"HDFStore key {key!r}: columns stored with pandas metadata {meta!r} "
                             "(e.g. categoricals) are not supported", file=path, column=", ".join(names))
        values = np.asarray(data[field])
        values = values.reshape(len(values), -1)
        dtype = _text(ds.attrs.get(f"{field}_dtype", b""))
        if values.dtype.kind == "S":
            values = np.char.decode(values, encoding).astype(object)
            values[values == nan_rep] = np.nan
        elif dtype.startswith(("datetime64", "timedelta64")) and values.dtype.kind in "iu":
            values = values.view(np.dtype(dtype))
        elif dtype == "bool":
            values = values.astype(bool)
        elif values.dtype.kind not in "biuf":
            raise InputError(f"HDFStore key {key!r}: values of type {dtype or values.dtype} are not supported",
                             file=path, column=", ".join(names))
        if values.shape[1] != len(names):
            raise InputError(f"HDFStore key {key!r}: {field!r} has {values.shape[1]} columns for {len(names)} names",
                             file=path)
        cols.update({n: values[:, j] for j, n in enumerate(names)})
    order = list(cols)
    axes = _pickled_literal(group.attrs.get("non_index_axes", b"N."), path, key, "non_index_axes")
    if isinstance(axes, list) and len(axes) == 1 and isinstance(axes[0], tuple) and len(axes[0]) == 2:
        listed = [str(n) for n in axes[0][1]] if isinstance(axes[0][1], list) else []
        if sorted(listed) == sorted(order):
            order = listed
    return pd.DataFrame({n: cols[n] for n in order})


_LITERAL_SCALARS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
                    "SHORT_BINSTRING", "NONE", "NEWTRUE", "NEWFALSE"}


def _pickled_literal(raw: Any, path: Path, key: str, attr: str) -> Any:
    """The list/tuple/str/number literal that PyTables stored pickled in an attribute, without unpickling it.

    The pickle's opcodes are only read (:func:`pickletools.genops`); an opcode that would
    import or call anything (or build any other object) makes this an InputError.
    """
    import pickletools

    data = bytes(raw) if isinstance(raw, (bytes, np.bytes_)) else _text(raw).encode()
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def refuse(why: str) -> InputError:
        return InputError(f"HDFStore key {key!r}: attribute {attr!r} is not a plain list of names ({why})", file=path)

    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                break
            if name in _LITERAL_SCALARS:
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}.get(name, arg))
            elif name == "MARK":
                marks.append(len(stack))
            elif name in ("LIST", "TUPLE"):
                start = marks.pop()
                items = stack[start:]
                del stack[start:]
                stack.append(items if name == "LIST" else tuple(items))
            elif name in ("EMPTY_LIST", "EMPTY_TUPLE"):
                stack.append([] if name == "EMPTY_LIST" else ())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name in ("APPEND", "APPENDS"):
                start = marks.pop() if name == "APPENDS" else len(stack) - 1
                items = stack[start:]
                del stack[start:]
                if not isinstance(stack[-1], list):
                    raise refuse("append to a non-list")
                stack[-1].extend(items)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if arg is None else arg] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            else:
                raise refuse(f"pickle opcode {name}")
    except InputError:
        raise
    except Exception as exc:  # malformed pickle: truncated, bad memo, empty stack
        raise refuse(f"{type(exc).__name__}: {exc}") from None
    if len(stack) != 1:
        raise refuse("not one value")
    return stack[0]


def _read_matrix_layout(path: Path, fh: Any, group: Any) -> pd.DataFrame:
    phi = np.asarray(group["phi"][...], dtype=float)
    n, p = phi.shape
    labels = _attr_names(group["phi"], "phi_labels") or _attr_names(fh, "phi_labels") or [f"phi_{i}" for i in range(p)]
    if len(labels) != p:
        raise InputError(f"phi_labels has {len(labels)} names for {p} φ columns", file=path, column="phi")
    cols: dict[str, np.ndarray] = dict(zip(labels, phi.T))
    if "theta" in group:
        theta = np.asarray(group["theta"][...], dtype=float)
        theta = theta.reshape(1, -1) if theta.ndim <= 1 else theta
        if theta.shape[0] not in (1, n):
            raise InputError(f"theta has {theta.shape[0]} rows for {n} events", file=path, column="theta")
        d = theta.shape[1]
        names = _attr_names(group["theta"], "theta_headers") or _attr_names(fh, "theta_headers") or [f"theta_{i}" for i in range(d)]
        if len(names) != d:
            raise InputError(f"theta_headers has {len(names)} names for {d} θ columns", file=path, column="theta")
        for j, name in enumerate(names):
            cols[name] = np.broadcast_to(theta[:, j], (n,)).copy()
    if "target" not in group:
        raise InputError("HDF5 matrix layout needs a 'target' dataset next to 'phi'", file=path, column="target")
    target = np.asarray(group["target"][...]).reshape(-1)
    if len(target) != n:
        raise InputError(f"target has {len(target)} entries for {n} events", file=path, column="target")
    tname = (_attr_names(group["target"], "target_label") or _attr_names(fh, "target_label") or ["target"])[0]
    cols[tname] = target
    return pd.DataFrame(cols)


def _read_flat_layout(path: Path, group: Any) -> pd.DataFrame:
    import h5py

    datasets = {name: ds for name, ds in group.items() if isinstance(ds, h5py.Dataset)}
    for name, ds in datasets.items():
        if "PSEUDOATOM" in ds.attrs:  # a PyTables ObjectAtom: pickled Python objects
            raise InputError("HDF5 dataset holds pickled Python objects, which rarefy does not load", file=path,
                             column=name)
    cols = {name: np.asarray(ds[...]) for name, ds in datasets.items()}
    if not cols:
        raise InputError("HDF5 file has no datasets to read as columns", file=path)
    lengths = {name: v.shape[0] if v.ndim else 1 for name, v in cols.items()}
    if len(set(lengths.values())) != 1 or any(v.ndim != 1 for v in cols.values()):
        raise InputError(f"HDF5 datasets must be 1-D columns of one length, got shapes "
                         f"{ {k: v.shape for k, v in cols.items()} }", file=path)
    return pd.DataFrame(cols)


# -------------------------------------------------------------------- ROOT
def _read_root(path: Path, key: str | None) -> pd.DataFrame:
    try:
        uproot = require("uproot")
    except InputError as exc:
        raise InputError(f"reading ROOT files: {exc.reason}", file=path) from None
    try:
        fh = uproot.open(path)
    except Exception as exc:  # uproot raises many types for bad files
        raise InputError(f"cannot open ROOT file: {exc}", file=path) from None
    with fh:
        kinds = {k.split(";")[0]: cls for k, cls in fh.classnames().items() if cls in ("TTree", "ROOT::RNTuple")}
        trees = list(kinds)
        if key is None:
            if len(trees) != 1:
                raise InputError(f"ROOT file holds TTrees {trees}; name one with 'key'", file=path)
            key = trees[0]
        if key not in trees:
            raise InputError(f"TTree {key!r} not found (TTrees: {trees})", file=path)
        obj = fh[key]
        if kinds[key] == "TTree":
            arrays = {name: branch.array(library="np") for name, branch in obj.items()}
        else:  # RNTuple, what uproot writes from a plain dict
            arrays = obj.arrays(library="np")
        cols = {}
        for name, values in arrays.items():
            values = np.asarray(values)
            if values.dtype == object or values.ndim != 1:
                raise InputError("ROOT branch is not flat (one value per entry); only flat branches are read",
                                 file=path, column=name)
            cols[name] = values
    return pd.DataFrame(cols)
