"""Readers for tabular files (CSV, Parquet) into pandas DataFrames.

Errors name the file. Row numbers used elsewhere in rarefy are 0-based data rows (the
header is not counted), matching pandas' default index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import InputError

__all__ = ["read_frame", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    A leading unnamed CSV column (a pandas index written by ``to_csv``) is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    try:
        if kind == "csv":
            frame = pd.read_csv(path)
            unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: 0")]
            frame = frame.drop(columns=unnamed)
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            raise InputError(f"unknown table format {path.suffix!r}; use .csv or .parquet", file=path)
    except InputError:
        raise
    except Exception as exc:  # parser errors from pandas / pyarrow
        raise InputError(f"cannot read table: {exc}", file=path) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame
