"""Config overrides in Python: load_config(path, overrides=[...]) and the jobs' overrides=."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from rarefy.config import apply_overrides, load_config
from rarefy.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
MODERATOR = ROOT / "examples" / "moderator" / "simulate.yaml"


def test_overrides_are_validated_like_the_yaml():
    cfg = load_config(MODERATOR, overrides=[
        "seed=3", "surrogate.kind=pce", "space.parameters.radius.high=200", "campaign.runs.0.events=1000",
        "fidelities.hf.cost_cpu_h=5", "campaign.executor.workers=2", "acquisition.events={lf: 10, hf: 4}",
        "acquisition.fidelities=[hf]", "loop.iterations=2",
    ])
    assert cfg.seed == 3 and cfg.surrogate.kind == "pce"
    assert cfg.space.parameters["radius"].high == 200.0
    assert cfg.campaign.runs[0].events == 1000
    assert cfg.fidelity("hf").cost_cpu_h == 5.0
    assert cfg.campaign.executor.kind == "local" and cfg.campaign.executor.workers == 2
    assert cfg.acquisition.events == {"lf": 10, "hf": 4} and cfg.acquisition.fidelities == ["hf"]
    assert cfg.loop is not None and cfg.loop.iterations == 2  # a whole missing section is created


def test_values_are_yaml_scalars():
    raw = {"a": {"b": 1}, "items": [{"name": "x", "v": 0}, {"name": "y", "v": 0}]}
    out = apply_overrides(raw, ["a.b='3'", "a.c=0.5", "a.d=true", "a.e=", "items.y.v=[1, 2]", "items.-2.v=null"])
    assert out == {"a": {"b": "3", "c": 0.5, "d": True, "e": None},
                   "items": [{"name": "x", "v": None}, {"name": "y", "v": [1, 2]}]}
    assert raw == {"a": {"b": 1}, "items": [{"name": "x", "v": 0}, {"name": "y", "v": 0}]}  # not changed in place


@pytest.mark.parametrize("override, message", [
    ("campaign.runs.0.evnts=3", "override 'campaign.runs.0.evnts=3': campaign.runs.0.evnts: Extra inputs"),
    ("campaign.runs.0.events=0", "override 'campaign.runs.0.events=0': campaign.runs.0.events: Input should be"),
    ("campaign.executor.workers=x", "override 'campaign.executor.workers=x': campaign.executor.local.workers:"),
    ("target=hf2", "override 'target=hf2': unknown fidelity 'hf2' in 'target'"),
    ("campaign.runs.0.fidelity=xx", "override 'campaign.runs.0.fidelity=xx': campaign.runs.0: unknown fidelity 'xx'"),
    ("seed=[1", "override 'seed=[1': the value is not valid YAML"),
    ("=3", "override '=3' is not KEY=VALUE"),
    ("a..b=3", "override 'a..b=3': empty key"),
])
def test_bad_overrides_name_the_override_and_the_file(override, message):
    with pytest.raises(InputError) as err:
        load_config(MODERATOR, overrides=[override])
    assert str(err.value).startswith(f"{MODERATOR}: {message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_only_the_override_at_fault_is_named():
    with pytest.raises(InputError) as err:
        load_config(MODERATOR, overrides=["campaign.runs.1.runs=3", "campaign.runs.0.fidelity=xx", "seed=2"])
    assert f"{MODERATOR}: override 'campaign.runs.0.fidelity=xx': campaign.runs.0: unknown" in str(err.value)
    assert "runs.1" not in str(err.value) and "seed" not in str(err.value)


def test_an_error_in_the_file_is_not_blamed_on_an_override(tmp_path):
    raw = yaml.safe_load(MODERATOR.read_text())
    raw["surrogate"] = {"kind": "gp"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError) as err:
        load_config(path, overrides=["seed=4"])
    assert "override" not in str(err.value) and "surrogate.kind" in str(err.value)


def test_jobs_take_overrides_and_config_objects(tmp_path):
    from rarefy.config import as_config

    cfg = load_config(MODERATOR)
    again, source = as_config(cfg, ["seed=11"])
    assert source is None and again.seed == 11 and cfg.seed == 7
    from_path, source = as_config(MODERATOR, ["seed=12"])
    assert source == MODERATOR and from_path.seed == 12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab.=0-[]{}: '", max_size=12), max_size=3))
def test_any_override_text_gives_a_config_or_an_input_error(overrides):
    try:
        load_config(MODERATOR, overrides=overrides)
    except InputError as exc:
        assert "\n" not in str(exc)
