"""EventTable and the event readers (CSV, Parquet, HDF5 via h5py and HDFStore, ROOT via uproot)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from rarefy.data.event_readers import read_event_frame, read_events
from rarefy.data.events import EventTable
from rarefy.errors import InputError

DATA = Path(__file__).resolve().parents[1] / "fixtures"
LEGEND = DATA / "legend_neutron_events_lf.csv"
THETA = ["radius", "thickness", "npanels", "theta", "length"]
RESUM_PHI = ["r_0[m]", "z_0[m]", "time_t[ms]", "r_t[m]", "z_t[m]", "L_t[m]", "ln(E0vsET)", "edep_t[eV]", "nsec"]


def legend_events(**kw) -> EventTable:
    return read_events(LEGEND, theta=THETA, phi=RESUM_PHI, outcome="nC_Ge77", weight="weights", **kw)


def test_legend_csv_reads_real_columns():
    ev = legend_events(fidelity="lf", run_id="legend-0")
    assert ev.n == 10_000 and ev.k == 3
    assert ev.phi_names == RESUM_PHI and ev.theta_names == THETA
    df = ev.to_pandas()
    assert set(df["fidelity"]) == {"lf"} and set(df["run_id"]) == {"legend-0"}
    assert df["radius"].iloc[0] == pytest.approx(208.7) and df["npanels"].iloc[0] == 22
    assert ev.weights is not None and np.allclose(ev.weights, 4e-5)
    assert ev.phi().shape == (10_000, 9)


def test_column_mapping_renames_file_columns():
    ev = read_events(LEGEND, columns={"nC_Ge77": "ge77", "r_0[m]": "r0_m", "Radius": "unused"},
                     theta=["radius"], phi=["r0_m"], outcome="ge77")
    assert ev.phi_names == ["r0_m"] and ev.k == 3


def test_missing_column_names_file_and_column():
    with pytest.raises(InputError) as info:
        read_events(LEGEND, theta=THETA, phi=["r_0[m]", "no_such_phi"], outcome="nC_Ge77")
    assert "no_such_phi" in str(info.value) and LEGEND.name in str(info.value)
    with pytest.raises(InputError, match="outcome column"):
        read_events(LEGEND, theta=THETA, phi=RESUM_PHI, outcome="nope")


def test_bad_outcome_names_row(tmp_path):
    frame = pd.DataFrame({"a": [0.1, 0.2, 0.3], "outcome": [0, 2, 1]})
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        read_events(path)
    msg = str(info.value)
    assert "bad.csv" in msg and "'outcome'" in msg and "row 1" in msg


def test_nan_phi_is_rejected_with_row(tmp_path):
    path = tmp_path / "nan.csv"
    pd.DataFrame({"a": [0.1, np.nan], "outcome": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="row 1"):
        read_events(path, phi=["a"])


def test_parquet_round_trip_keeps_theta_phi_split(tmp_path):
    ev = legend_events(fidelity="lf", run_id="r1")
    path = ev.to_parquet(tmp_path / "ev.parquet")
    back = EventTable.read_parquet(path)
    assert back.theta_names == THETA and back.phi_names == RESUM_PHI
    pd.testing.assert_frame_equal(back.to_pandas(), ev.to_pandas())
    # a plain Parquet file (no rarefy metadata) reads through read_events with a spec
    ev.to_pandas().to_parquet(tmp_path / "plain.parquet")
    again = read_events(tmp_path / "plain.parquet", theta=THETA, phi=RESUM_PHI)
    assert again.k == 3 and again.n == 10_000


def test_hdf5_matrix_layout_as_in_resum(tmp_path):
    src = legend_events()
    path = tmp_path / "run_0001.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("phi", data=src.phi())
        fh.create_dataset("theta", data=np.array([208.7, 6.4, 22.0, 16.7, 26.2]))
        fh.create_dataset("target", data=src.outcome.astype(float))
        fh.attrs["phi_labels"] = RESUM_PHI
        fh.attrs["theta_headers"] = THETA
        fh.attrs["target_label"] = "nC_Ge77"
    ev = read_events(path, theta=THETA, phi=RESUM_PHI, outcome="nC_Ge77")
    assert ev.n == 10_000 and ev.k == 3
    assert np.allclose(ev.phi(), src.phi()) and np.allclose(ev.theta()[:, 0], 208.7)


def test_hdf5_matrix_layout_without_labels(tmp_path):
    path = tmp_path / "plain.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("phi", data=rng.random((50, 3)))
        fh.create_dataset("target", data=(rng.random(50) < 0.2).astype(np.int8))
    ev = read_events(path, outcome="target", theta=["radius"], theta_values={"radius": 120.0})
    assert ev.phi_names == ["phi_0", "phi_1", "phi_2"] and np.all(ev.theta() == 120.0)


def test_hdf5_flat_layout_and_key(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as fh:
        grp = fh.create_group("run7")
        grp.create_dataset("e0", data=np.linspace(1, 2, 20))
        grp.create_dataset("hit", data=np.r_[np.ones(5), np.zeros(15)].astype(np.int8))
    ev = read_events(path, key="run7", outcome="hit")
    assert ev.k == 5 and ev.phi_names == ["e0"]
    with pytest.raises(InputError, match="group 'nope'"):
        read_events(path, key="nope", outcome="hit")


def test_pandas_hdfstore(tmp_path):
    pytest.importorskip("tables")
    frame = pd.read_csv(LEGEND).head(500)
    path = tmp_path / "store.h5"
    frame.to_hdf(path, key="events", format="table")
    ev = read_events(path, theta=THETA, phi=RESUM_PHI, outcome="nC_Ge77", weight="weights")
    assert ev.n == 500
    np.testing.assert_allclose(ev.phi()[:, 0], frame["r_0[m]"].to_numpy())
    frame.to_hdf(path, key="other", format="fixed")
    with pytest.raises(InputError, match="several tables"):
        read_event_frame(path)
    assert len(read_event_frame(path, key="other")) == 500


def test_root_ttree_via_uproot(tmp_path):
    uproot = pytest.importorskip("uproot")
    frame = pd.read_csv(LEGEND).head(2000)
    path = tmp_path / "events.root"
    with uproot.recreate(path) as fh:
        tree = fh.mktree("hits", {"r0": np.float64, "z0": np.float64, "nC_Ge77": np.int32})
        tree.extend({"r0": frame["r_0[m]"].to_numpy(), "z0": frame["z_0[m]"].to_numpy(),
                     "nC_Ge77": frame["nC_Ge77"].to_numpy().astype(np.int32)})
    assert uproot.open(path).classnames() == {"hits;1": "TTree"}
    ev = read_events(path, phi=["r0", "z0"], outcome="nC_Ge77", fidelity="lf")
    assert ev.n == 2000 and ev.k == int(frame["nC_Ge77"].sum())
    np.testing.assert_allclose(ev.phi()[:, 1], frame["z_0[m]"].to_numpy())
    with pytest.raises(InputError, match="TTree 'missing' not found"):
        read_events(path, key="missing")


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="unknown event file format"):
        read_events(tmp_path / "x.json")
    with pytest.raises(InputError, match="file not found"):
        read_events(tmp_path / "nope.csv")


def test_concat_and_with_run():
    a = EventTable.from_arrays({"x": 0.5}, {"u": np.arange(3.0)}, np.array([0, 1, 0]), run_id="a")
    b = EventTable.from_arrays({"x": 0.7}, {"u": np.arange(2.0)}, np.array([1, 1]), run_id="b")
    both = EventTable.concat([a, b])
    assert both.n == 5 and both.k == 3
    assert list(both.to_pandas()["run_id"]) == ["a"] * 3 + ["b"] * 2
    c = EventTable.from_arrays({"y": 0.1}, {"u": np.arange(2.0)}, np.array([1, 1]))
    with pytest.raises(InputError):
        EventTable.concat([a, c])


class _TouchOnLoad:
    """Unpickling this creates the file ``marker``: what a crafted event file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _one_line_error(path: Path, marker: Path | None = None) -> str:
    """The InputError that reading ``path`` raises (one line naming the file); ``marker`` must not appear."""
    raised = None
    try:
        read_events(path, outcome="hit")
    except Exception as exc:  # noqa: BLE001 - checked below, after the marker
        raised = exc
    assert marker is None or not marker.exists(), "reading the file ran code from a pickle in it"
    assert isinstance(raised, InputError), f"the crafted file gave {raised!r}, not an InputError"
    text = str(raised)
    assert "\n" not in text and str(path) in text
    return text


def test_hdfstore_object_column_is_refused_not_unpickled(tmp_path):
    pytest.importorskip("tables")
    marker = tmp_path / "marker"
    frame = pd.DataFrame({"e0": [1.0, 2.0], "hit": [0, 1], "payload": [_TouchOnLoad(marker), _TouchOnLoad(marker)]})
    path = tmp_path / "crafted.h5"
    with pytest.warns(pd.errors.PerformanceWarning):   # pandas pickles the object column
        frame.to_hdf(path, key="events", format="fixed")
    assert not marker.exists()
    text = _one_line_error(path, marker)
    assert "'payload'" in text and "pickled" in text


def test_hdfstore_pickled_metadata_is_refused_not_unpickled(tmp_path):
    import pickle

    pytest.importorskip("tables")
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.h5"
    pd.DataFrame({"e0": [1.0, 2.0], "hit": [0, 1]}).to_hdf(path, key="events", format="table")
    with h5py.File(path, "r+") as fh:   # the column names pandas keeps as a pickled list
        fh["events/table"].attrs["values_block_0_kind"] = np.bytes_(pickle.dumps([_TouchOnLoad(marker)], protocol=0))
        fh["events"].attrs["non_index_axes"] = np.bytes_(pickle.dumps([_TouchOnLoad(marker)], protocol=0))
    text = _one_line_error(path, marker)
    assert "'events'" in text and "values_block_0_kind" in text


@pytest.mark.parametrize("fmt", ["fixed", "table"])
def test_hdfstore_numeric_and_string_columns_read_as_pandas_does(tmp_path, fmt):
    pytest.importorskip("tables")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"e0": rng.random(6), "hit": np.r_[np.ones(2), np.zeros(4)].astype(np.int32),
                          "flag": [True, False] * 3, "e1": rng.random(6).astype(np.float32), 7: np.arange(6)})
    if fmt == "table":
        frame["label"] = list("abcdef")
        frame.columns = [str(c) for c in frame.columns]
    path = tmp_path / "store.h5"
    frame.to_hdf(path, key="events", format=fmt, **({"data_columns": ["e1"]} if fmt == "table" else {}))
    if fmt == "fixed":   # an integer column name is pickled by pandas: refused, named
        assert "block" in _one_line_error(path)
        frame.columns = [str(c) for c in frame.columns]
        frame.to_hdf(path, key="events", format=fmt)
    got = read_event_frame(path)
    pd.testing.assert_frame_equal(got, frame.reset_index(drop=True))
    ev = read_events(path, outcome="hit", phi=["e0", "e1"])
    assert ev.k == 2 and ev.n == 6
