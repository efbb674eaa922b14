"""rarefy.io: the readers and the output check turn file-system and format problems into one-line InputErrors."""

import pandas as pd
import pytest

from rarefy.errors import InputError
from rarefy.io import check_output, read_json, read_parquet


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
