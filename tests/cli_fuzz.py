"""Hostile input for the command line: mutated example configs, rate tables, paths, options and run directories.

Each case draws (with hypothesis) one mutation of what a user hands rarefy and runs the
command in-process. The contract checked by :func:`check`: the exit code is 0 or 2; on
2, stderr is exactly one line starting with ``error:``; no traceback anywhere; no
temporary file (``*.tmp``) or staging folder left behind.

Cheap commands run for real (``fit`` on the LEGEND rates, ``simulate`` of a tiny moderator
campaign with the sync executor, ``validate`` / ``optimize`` / ``suggest`` / ``ingest`` on
small run directories); configs whose job would be slow (bench, train, infer, a closed
loop) are validated as their job does before any work (:func:`validate_only`).

Used by ``tests/test_cli_fuzz.py`` (short, in CI; long, ``-m slow``) and
``benchmarks/fuzz_inputs.py`` (counts as one JSON line).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml
from hypothesis import strategies as st
from typer.testing import CliRunner

from rarefy.cli import app
from rarefy.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LEGEND_DATA = EXAMPLES / "legend" / "data"
LEGEND_CSV = "Ge77_rates_CNP_v1.6.csv"
HELDOUT_CSV = "Ge77_rates_new_samples_v1.6.csv"

#: every example config; those in RUNNABLE are run for real when the mutated config stays cheap
CONFIGS = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("*/*.yaml"))
FIT_CONFIGS = ("legend/legend.yaml", "legend/resum.yaml")
SIM_CONFIGS = ("moderator/simulate.yaml", "moderator/run.yaml", "xlzd/run.yaml")
INFER_CONFIGS = ("bbh/infer.yaml", "bbh/infer-full.yaml")
ANOMALY_PREFIX = "anomaly/"  # rarefy anomaly configs: their own schema, validated, never run here
UNFOLD_PREFIX = "unfold/"    # rarefy unfold configs: their own schema, validated, never run here

#: replacement values: wrong types, negatives, zeros, huge numbers, NaN and infinity, empty and odd strings
BAD_VALUES: list[Any] = [
    "abc", "", "NaN", "nan", "inf", "-1", "1e30", [1, 2], [], {}, {"a": 1}, True, False, None,
    0, -1, -7, 1, 2, 0.5, -0.5, 1e-300, 1e30, -1e30, 1e308, 10**12, 10**30, 2**63, float("nan"),
    float("inf"), float("-inf"), "x" * 300, "../../etc/passwd", "/dev/null", 3.7,
]
#: what a path in a config is pointed at
PATH_TARGETS = ["missing", "directory", "config", "garbage", "empty", "devnull", "parquet_truncated", "wrong_suffix"]


@dataclass
class Outcome:
    """What one command did: exit code, its stdout and stderr, and the traceback of an uncaught exception."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    trace: str | None = None


@dataclass
class Tally:
    """Counts over cases: successes, one-line errors, contract breaches (with their first lines)."""

    cases: int = 0
    successes: int = 0
    errors: int = 0
    tracebacks: int = 0
    breaches: list[str] = field(default_factory=list)


_runner = CliRunner()


def invoke(args: list[str]) -> Outcome:
    """Run ``rarefy ARGS`` in-process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _runner.invoke(app, [str(a) for a in args])
    trace = None
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        trace = "".join(traceback.format_exception(*res.exc_info))
    return Outcome(res.exit_code, res.stdout, res.stderr, trace)


def call(fn: Callable[..., Any], *args: Any) -> Outcome:
    """Run a Python function as the CLI would: an :class:`InputError` is exit 2 and one line, anything else a traceback."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except InputError as exc:
        return Outcome(2, stderr=f"error: {exc}\n")
    except Exception:  # noqa: BLE001 - a traceback is what the check reports
        return Outcome(1, trace=traceback.format_exc())
    return Outcome(0)


def leftovers(folder: Path) -> list[str]:
    """Temporary files and staging folders under ``folder`` (half-written output)."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith((".tmp", ".staging")))


def breach(outcome: Outcome, folder: Path) -> str | None:
    """Why ``outcome`` breaks the contract (None when it keeps it)."""
    if outcome.trace is not None:
        return "traceback: " + outcome.trace.strip().splitlines()[-1]
    text = outcome.stdout + outcome.stderr
    if "Traceback" in text:
        return "traceback text in the output"
    if outcome.exit_code not in (0, 2):
        return f"exit code {outcome.exit_code}: {outcome.stderr.strip()[:200]}"
    if outcome.exit_code == 2:
        lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("error:"):
            return f"stderr is not one 'error:' line: {outcome.stderr.strip()[:300]!r}"
    left = leftovers(folder)
    if left:
        return f"left behind: {left[:3]}"
    return None


# ------------------------------------------------------------------ mutations
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict/list (the node itself first)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple) -> Any:
    for k in path:
        node = node[k]
    return node


def mutate_tree(data: st.DataObject, tree: dict, path_value: Callable[[str], str]) -> dict:
    """One random change of a config tree: a bad value, a deleted or unknown key, a broken list, a path elsewhere."""
    tree = copy.deepcopy(tree)
    paths = [p for p in _paths(tree) if p]
    path = data.draw(st.sampled_from(paths), label="key")
    parent, key = _get(tree, path[:-1]), path[-1]
    value = parent[key]
    ops = ["value", "value", "delete", "unknown_key", "numeric"]
    if isinstance(value, list):
        ops += ["empty_list", "drop_item", "dup_item", "scalar"]
    if isinstance(value, str) or path[-1] in ("paths", "run_dir", "surrogate", "delays") or "paths" in path:
        ops += ["path"]
    op = data.draw(st.sampled_from(ops), label="op")
    if op == "value":
        parent[key] = data.draw(st.sampled_from(BAD_VALUES), label="value")
    elif op == "numeric":
        parent[key] = data.draw(st.one_of(st.integers(-10**40, 10**40), st.floats(allow_nan=True, allow_infinity=True),
                                          st.sampled_from([0, -1, 10**9, 10**12, 10**18, 1e30])), label="number")
    elif op == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op == "unknown_key":
        target = value if isinstance(value, dict) else parent if isinstance(parent, dict) else tree
        target[data.draw(st.sampled_from(["bogus", "extra_key", "Seed", "runs "]), label="unknown")] = 1
    elif op == "empty_list":
        parent[key] = []
    elif op == "drop_item" and value:
        value.pop(data.draw(st.integers(0, len(value) - 1), label="drop"))
    elif op == "dup_item" and value:
        value.append(copy.deepcopy(value[0]))
    elif op == "scalar":
        parent[key] = value[0] if value else 0
    elif op == "path":
        parent[key] = path_value(data.draw(st.sampled_from(PATH_TARGETS), label="path target"))
    return tree


def shrink(name: str, tree: dict) -> dict:
    """An example config made cheap to run: one quick surrogate restart, tiny sync campaigns."""
    tree = copy.deepcopy(tree)
    if isinstance(tree.get("surrogate"), dict):
        tree["surrogate"].update(restarts=1, max_iter=20)
    for key, small in (("acquisition", {"candidates": 32, "reference": 8, "starts": 1, "steps": 2}),
                       ("optimize", {"candidates": 32, "starts": 1, "steps": 2})):
        if isinstance(tree.get(key), dict) or key not in tree:
            tree[key] = {**(tree.get(key) or {}), **small}
    if name in INFER_CONFIGS:
        tree["infer"].update(walkers=8, steps=30, burn=10, thin=1)
        tree["surrogate"].update(max_degree=1, cv_folds=2)
    if name in SIM_CONFIGS:
        fids = [f["name"] for f in tree["fidelities"]]
        tree["campaign"]["runs"] = [{"fidelity": fids[0], "runs": 3, "events": 300, "designs": "sobol"},
                                    {"fidelity": fids[-1], "runs": 1, "events": 300, "designs": fids[0]}]
        tree["campaign"]["executor"] = "sync"
    return tree


class Workspace:
    """A folder with copies of the example data and, built once, a fitted, a simulated and a denoised run directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        shutil.copytree(LEGEND_DATA, self.data)
        for f in (EXAMPLES / "bbh" / "data").glob("*.parquet"):
            shutil.copy(f, self.data / f.name)
        self.garbage = base / "garbage.csv"
        self.garbage.write_bytes(bytes(range(256)) * 8)
        self.empty = base / "empty.csv"
        self.empty.write_text("")
        frame = pd.read_csv(self.data / LEGEND_CSV, index_col=0)
        self.pq_truncated = base / "truncated.parquet"
        frame.to_parquet(self.pq_truncated)
        self.pq_truncated.write_bytes(self.pq_truncated.read_bytes()[:300])
        self.wrong_suffix = base / "rates.xlsx"
        self.wrong_suffix.write_text("a,b\n1,2\n")
        self.fitted = base / "fitted"
        cfg = self.config("legend/legend.yaml")
        out = invoke(["fit", self.write_config(cfg, base / "legend.yaml"), "--out", self.fitted])
        assert out.exit_code == 0, out.stderr + (out.trace or "")
        self.simulated = base / "simulated"
        cfg = self.config("moderator/run.yaml")
        out = invoke(["simulate", self.write_config(cfg, base / "moderator.yaml"), "--out", self.simulated])
        assert out.exit_code == 0, out.stderr + (out.trace or "")
        self.denoised = base / "denoised"
        shutil.copytree(self.simulated, self.denoised)
        cfg["denoise"] = {"model": {"encoder": [8], "decoder": [8]}, "epochs": 1, "batch_size": 256,
                          "batches_per_epoch": 2, "context_size": 8, "context_per_batch": 64, "min_context": 2,
                          "split": [0.5, 0.5, 0.0], "tensorboard": False, "progress": False, "device": "cpu",
                          "early_stopping": {"enabled": False}}
        out = invoke(["train", self.write_config(cfg, base / "denoise.yaml"), "--run", self.denoised])
        assert out.exit_code == 0, out.stderr + (out.trace or "")

    def config(self, name: str) -> dict:
        tree = yaml.safe_load((EXAMPLES / name).read_text())
        tree = shrink(name, tree)
        if isinstance(tree.get("data"), dict) and "paths" in tree["data"]:
            tree["data"]["paths"] = [str(self.data / Path(p).name) for p in tree["data"]["paths"]]
        if isinstance(tree.get("infer"), dict) and isinstance(tree["infer"].get("full"), dict):
            tree["infer"]["full"]["delays"] = str(self.data / "delays.parquet")
        return tree

    def path_value(self, folder: Path) -> Callable[[str], str]:
        def value(kind: str) -> str:
            return str({
                "missing": folder / "nothere.csv", "directory": folder, "config": folder / "config.yaml",
                "garbage": self.garbage, "empty": self.empty, "devnull": "/dev/null",
                "parquet_truncated": self.pq_truncated, "wrong_suffix": self.wrong_suffix,
            }[kind])
        return value

    @staticmethod
    def write_config(tree: Any, path: Path) -> Path:
        path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
        return path


def cheap(tree: dict) -> bool:
    """Whether a (valid) mutated campaign is small enough to simulate in a case."""
    try:
        blocks = tree["campaign"]["runs"]
        events = [f.get("events") or 0 for f in tree["fidelities"]]
        total = sum(int(b["runs"]) * int(b.get("events") or max(events, default=0) or 10**9) for b in blocks)
        return total <= 5000 and sum(int(b["runs"]) for b in blocks) <= 8
    except Exception:  # noqa: BLE001 - a config this check cannot read is not run
        return False


def cheap_infer(tree: dict) -> bool:
    """Whether a (valid) mutated inference config samples a short chain with a small surrogate."""
    try:
        icfg, scfg = tree["infer"], tree.get("surrogate") or {}
        return (int(icfg.get("walkers", 32)) * int(icfg.get("steps", 3000)) <= 2000
                and int(scfg.get("max_degree", 4)) <= 2 and int(scfg.get("degree") or 0) <= 2
                and int(scfg.get("restarts", 5)) <= 2 and int((icfg.get("full") or {}).get("grid", 16)) <= 64)
    except Exception:  # noqa: BLE001 - a config this check cannot read is not run
        return False


def validate_only(path: Path) -> None:
    """What a slow job checks before any work: the config, and a campaign's run plan."""
    from rarefy.config import load_config
    from rarefy.jobs.simulate import campaign_requests

    cfg = load_config(path)
    if cfg.campaign is not None:
        campaign_requests(cfg)


# ------------------------------------------------------------------ cases
def case_config(data: st.DataObject, ws: Workspace, folder: Path) -> Outcome:
    """A mutated example config, run for real when cheap, else validated."""
    name = data.draw(st.sampled_from(CONFIGS), label="config")
    tree: Any = ws.config(name)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not isinstance(tree, dict) or not tree:
            break
        tree = mutate_tree(data, tree, ws.path_value(folder))
    if data.draw(st.integers(0, 20), label="whole file") == 0:
        tree = data.draw(st.sampled_from([[1, 2], "text", None, 3]), label="not a mapping")
    path = ws.write_config(tree, folder / "config.yaml")
    out = folder / "run"
    if name in FIT_CONFIGS:
        args = ["fit", path, "--out", out]
        if data.draw(st.booleans(), label="cv"):
            args += ["--cv", data.draw(st.sampled_from([3, 2, 1, 0, -5, 10**6]), label="k")]
        return invoke(args)
    if name.startswith(ANOMALY_PREFIX):
        from rarefy.config import load_anomaly_config

        return call(load_anomaly_config, path)
    if name.startswith(UNFOLD_PREFIX):
        from rarefy.config import load_unfold_config

        return call(load_unfold_config, path)
    first = call(validate_only, path)
    if first.exit_code != 0 or not isinstance(tree, dict):
        return first
    if name in INFER_CONFIGS and cheap_infer(tree):
        return invoke(["infer", path, "--out", out])
    if name in SIM_CONFIGS and cheap(tree):
        return invoke(["simulate", path, "--out", out])
    return first


def case_table(data: st.DataObject, ws: Workspace, folder: Path) -> Outcome:
    """The LEGEND config on a mutated rate table (a column dropped, bad cells, duplicate rows, a broken file)."""
    frame = pd.read_csv(ws.data / LEGEND_CSV, index_col=0)
    columns = list(frame.columns)
    op = data.draw(st.sampled_from(["drop", "cell", "cell", "column", "dup", "empty", "header", "truncate",
                                    "garbage", "parquet", "parquet_truncated", "rename", "shuffle"]), label="table op")
    table = folder / LEGEND_CSV
    write_csv = True
    if op == "drop":
        frame = frame.drop(columns=data.draw(st.sampled_from(columns), label="column"))
    elif op in ("cell", "column"):
        col = data.draw(st.sampled_from(columns), label="column")
        value = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, -1e30, 1e300, 0.0,
                                           "abc", "", 10**30, 2**63, -0.5, 1e-320]), label="cell value")
        frame[col] = frame[col].astype(object)
        if op == "cell":
            frame.iloc[data.draw(st.integers(0, len(frame) - 1), label="row"), columns.index(col)] = value
        else:
            frame[col] = value
    elif op == "dup":
        frame = pd.concat([frame, frame.iloc[: data.draw(st.integers(1, len(frame)), label="dups")]])
    elif op == "rename":
        frame = frame.rename(columns={data.draw(st.sampled_from(columns), label="column"): "renamed"})
    elif op == "shuffle":
        frame = frame.sample(frac=1.0, random_state=data.draw(st.integers(0, 99), label="perm"))
    if op == "empty":
        table.write_text("")
        write_csv = False
    elif op == "header":
        table.write_text(",".join(["", *columns]) + "\n")
        write_csv = False
    elif op == "garbage":
        table.write_bytes(data.draw(st.binary(min_size=1, max_size=400), label="bytes"))
        write_csv = False
    elif op in ("parquet", "parquet_truncated"):
        table = folder / "rates.parquet"
        frame.to_parquet(table)
        if op == "parquet_truncated":
            raw = table.read_bytes()
            table.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")])
        write_csv = False
    if write_csv:
        frame.to_csv(table)
        if op == "truncate":
            raw = table.read_bytes()
            table.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")])
    tree = ws.config("legend/legend.yaml")
    tree["data"]["paths"] = [str(table), str(ws.data / HELDOUT_CSV)]
    path = ws.write_config(tree, folder / "legend.yaml")
    if data.draw(st.booleans(), label="as validation data"):
        run = folder / "fitted"  # validate writes its plot into the run directory: never into the shared one
        shutil.copytree(ws.fitted, run)
        return invoke(["validate", run, table, "--json", folder / "v.json"])
    return invoke(["fit", path, "--out", folder / "run"])


def _corrupt(data: st.DataObject, path: Path) -> None:
    op = data.draw(st.sampled_from(["delete", "truncate", "garbage", "empty", "directory", "json_list"]), label="corrupt")
    if path.is_dir() and op != "delete":
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            return
        path = data.draw(st.sampled_from(files), label="inner file")
    if op == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif op == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)), label="cut")])
    elif op == "garbage":
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=200), label="bytes"))
    elif op == "empty":
        path.write_bytes(b"")
    elif op == "directory":
        path.unlink()
        path.mkdir()
    elif op == "json_list":
        path.write_text("[1, 2, 3]\n")


def case_rundir(data: st.DataObject, ws: Workspace, folder: Path) -> Outcome:
    """A fitted, simulated or denoised run directory with one file broken (or none), then a command that reads it."""
    kind = data.draw(st.sampled_from(["fitted", "simulated", "denoised"]), label="run dir")
    run = folder / "run"
    shutil.copytree(getattr(ws, kind), run)
    entries = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    if data.draw(st.integers(0, 5), label="intact") > 0:
        _corrupt(data, run / data.draw(st.sampled_from(entries), label="entry"))
    if kind == "fitted":
        cmd = data.draw(st.sampled_from(["validate", "optimize", "suggest", "report", "ingest"]), label="command")
    elif kind == "denoised":
        cmd = data.draw(st.sampled_from(["denoise", "train", "simulate"]), label="command")
    else:
        cmd = data.draw(st.sampled_from(["simulate", "suggest", "ingest", "denoise", "report", "fit_rundir"]),
                        label="command")
    if cmd == "validate":
        return invoke(["validate", run, ws.data / HELDOUT_CSV])
    if cmd == "optimize":
        return invoke(["optimize", run, "--json", folder / "opt.json"])
    if cmd == "suggest":
        return invoke(["suggest", run, "--n", "1", "--out", folder / "s.csv"])
    if cmd == "report":
        return invoke(["report", run])
    if cmd == "denoise":
        return invoke(["denoise", run])
    if cmd == "train":
        return invoke(["train", ws.base / "denoise.yaml", "--run", run])
    if cmd == "simulate":
        return invoke(["simulate", ws.base / "moderator.yaml", "--out", run])
    if cmd == "fit_rundir":
        return invoke(["suggest", run, "--n", "2"])
    rows = folder / "runs.csv"
    names = ["radius", "thickness", "npanels", "theta", "length"]
    pd.DataFrame([{**{n: 1.0 for n in names}, "fidelity": "lf", "k": 1, "n": 10}]).to_csv(rows, index=False)
    return invoke(["ingest", run, rows])


def case_options(data: st.DataObject, ws: Workspace, folder: Path) -> Outcome:
    """Bad command-line options and output locations on good input."""
    blocker = folder / "a_file"
    blocker.write_text("x")
    where = data.draw(st.sampled_from([folder / "new" / "deep" / "out", blocker, blocker / "below", folder,
                                       Path("/proc/rarefy/out"), Path("/dev/null"), folder / "ok"]), label="out")
    cmd = data.draw(st.sampled_from(["fit", "simulate", "suggest_n", "suggest_out", "optimize", "validate_json",
                                     "ingest_files", "report_out"]), label="command")
    if cmd == "fit":
        return invoke(["fit", ws.base / "legend.yaml", "--out", where])
    if cmd == "simulate":
        return invoke(["simulate", ws.base / "moderator.yaml", "--out", where])
    if cmd == "suggest_n":
        run = folder / "sim"
        shutil.copytree(ws.simulated, run)
        n = data.draw(st.sampled_from([0, -1, 1, 10**6, 10**12, 10**30]), label="n")
        kind = data.draw(st.sampled_from([None, "ivr", "nope", ""]), label="kind")
        return invoke(["suggest", run, "--n", n, "--out", folder / "s.csv", *(["--kind", kind] if kind is not None else [])])
    if cmd == "suggest_out":
        run = folder / "sim"
        shutil.copytree(ws.simulated, run)
        return invoke(["suggest", run, "--out", where])
    if cmd == "optimize":
        run = folder / "fitted"
        shutil.copytree(ws.fitted, run)
        kappa = data.draw(st.sampled_from(["nan", "inf", "-1", "1e308", "0"]), label="kappa")
        objective = data.draw(st.sampled_from(["mean", "ucb", "max", ""]), label="objective")
        return invoke(["optimize", run, "--objective", objective, "--kappa", kappa, "--json", where])
    if cmd == "validate_json":
        run = folder / "fitted"
        shutil.copytree(ws.fitted, run)
        return invoke(["validate", run, ws.data / HELDOUT_CSV, "--json", where])
    if cmd == "ingest_files":
        run = folder / "sim"
        shutil.copytree(ws.simulated, run)
        return invoke(["ingest", run, where])
    return invoke(["report", where])


def case_ingest(data: st.DataObject, ws: Workspace, folder: Path) -> Outcome:
    """``rarefy ingest`` of a mutated run file (θ, fidelity, k, n) or event file (θ, fidelity, outcome, run_id)."""
    rates = pd.read_parquet(ws.simulated / "rates.parquet")
    names = ["radius", "thickness", "npanels", "theta", "length"]
    if data.draw(st.booleans(), label="events"):
        rows = rates.loc[rates.index.repeat(3), names + ["fidelity"]].reset_index(drop=True)
        rows["outcome"] = [0, 1, 0] * len(rates)
        rows["run_id"] = [f"ext-{i // 3}" for i in range(len(rows))]
    else:
        rows = rates[names + ["fidelity", "k", "n"]].reset_index(drop=True)
        rows["run_id"] = [f"ext-{i}" for i in range(len(rows))]
    columns = list(rows.columns)
    for _ in range(data.draw(st.integers(0, 2), label="mutations")):
        op = data.draw(st.sampled_from(["drop", "cell", "dup", "fidelity"]), label="ingest op")
        if op == "drop":
            rows = rows.drop(columns=[data.draw(st.sampled_from(columns), label="column")], errors="ignore")
        elif op == "cell" and len(rows.columns):
            col = data.draw(st.sampled_from(list(rows.columns)), label="column")
            rows[col] = rows[col].astype(object)
            bad = data.draw(st.sampled_from(BAD_VALUES[:12] + [-1, 0, 2, 10**30, float("nan"), 1e300, 3.5]), label="cell")
            rows.at[data.draw(st.integers(0, len(rows) - 1), label="row"), col] = bad
        elif op == "dup":
            rows = pd.concat([rows, rows.iloc[:1]], ignore_index=True)
        elif op == "fidelity" and "fidelity" in rows.columns:
            rows["fidelity"] = data.draw(st.sampled_from(["hf-cnp", "xx", "", "lf "]), label="fidelity")
    suffix = data.draw(st.sampled_from([".csv", ".parquet", ".txt", ".h5"]), label="suffix")
    path = folder / f"runs{suffix}"
    if suffix == ".parquet":
        rows.astype({c: str for c in rows.columns if rows[c].dtype == object}).to_parquet(path)
    else:
        rows.to_csv(path, index=False)
    run = folder / "sim"
    shutil.copytree(ws.simulated, run)
    return invoke(["ingest", run, path])


CASES = {"config": case_config, "table": case_table, "rundir": case_rundir, "options": case_options,
         "ingest": case_ingest}


def run_case(data: st.DataObject, ws: Workspace, tally: Tally | None = None) -> str | None:
    """Draw and run one case in a fresh folder; returns the contract breach (None when kept)."""
    kind = data.draw(st.sampled_from(sorted(CASES)), label="case")
    folder = Path(tempfile.mkdtemp(prefix=f"case-{kind}-", dir=ws.base))
    try:
        outcome = CASES[kind](data, ws, folder)
        problem = breach(outcome, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if tally is not None:
        tally.cases += 1
        if problem is None and outcome.exit_code == 0:
            tally.successes += 1
        elif problem is None:
            tally.errors += 1
        else:
            tally.tracebacks += 1
            tally.breaches.append(f"{kind}: {problem}")
    if problem is not None:
        detail = outcome.trace or ""
        return f"{kind}: {problem}\n{detail}"
    return None


def make_workspace() -> Workspace:
    """A fresh workspace in a temporary folder (the caller removes ``ws.base``)."""
    return Workspace(Path(tempfile.mkdtemp(prefix="rarefy-fuzz-")))


