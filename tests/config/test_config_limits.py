"""Absurd sizes, non-finite numbers and a bad baseline design fail when the config is loaded, naming the key."""

from pathlib import Path

import pytest
import yaml

from rarefy import InputError, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run_config(**changes):
    cfg = yaml.safe_load((EXAMPLES / "moderator" / "run.yaml").read_text())
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = cfg
        for k in path:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[key] = value
    return cfg


@pytest.mark.parametrize("key, value, needle", [
    ("campaign.runs.0.events", 1e30, "campaign.runs.0.events"),
    ("campaign.runs.0.runs", 10**12, "campaign.runs.0.runs"),
    ("fidelities.0.events", 10**30, "fidelities.0.events"),
    ("fidelities.1.cost_cpu_h", float("nan"), "fidelities.1.cost_cpu_h"),
    ("loop.budget_cpu_h", float("inf"), "loop.budget_cpu_h"),
    ("acquisition.candidates", 10**12, "acquisition.candidates"),
    ("acquisition.events", {"lf": 10**30}, "acquisition.events.lf"),
    ("loop.iterations", 10**15, "loop.iterations"),
    ("seed", -1, "seed"),
    ("seed", 2**64, "seed"),
    ("surrogate.restarts", 10**9, "surrogate.restarts"),
    ("baseline", {"design": {"radius": 1000.0, "thickness": 5, "npanels": 10, "theta": 0, "length": 10}},
     "baseline.design.radius"),
    ("baseline", {"design": {"radius": 100.0, "thickness": 5, "npanels": 10.5, "theta": 0, "length": 10}},
     "integer rule or a constraint"),
])
def test_absurd_value_fails_at_load(tmp_path, key, value, needle):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_run_config(**{key: value})))
    with pytest.raises(InputError, match="run.yaml") as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("section, value, needle", [
    ("denoise", {"model": {"encoder": [10**9]}}, "denoise.model.encoder.0"),
    ("denoise", {"model": {"encoder": [8] * 1000}}, "denoise.model.encoder"),
    ("denoise", {"batch_size": 10**12}, "denoise.batch_size"),
    ("infer", {"msun_per_event": 1.0, "walkers": 10**6, "steps": 10**6, "burn": 0}, "walkers x steps"),
])
def test_absurd_network_and_sample_sizes_fail_at_load(tmp_path, section, value, needle):
    cfg = _run_config()
    cfg[section] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="run.yaml") as err:
        load_config(path)
    assert needle in str(err.value)


def test_config_path_that_is_a_folder_or_binary(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_config(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xd9\xff\x00garbage")
    with pytest.raises(InputError, match="c.yaml: cannot read the config"):
        load_config(path)
