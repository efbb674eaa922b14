"""Tutorial: fit, validate, suggest and ingest on the public LEGEND-1000 data.

A percent-format script (``# %%`` cells): run it as ``python examples/legend/tutorial.py``
from the repository root, open it as a notebook with jupytext, or read it on the
documentation site. It writes under ``runs/tutorial/`` and takes well under a minute.
"""

# %% [markdown]
# # Tutorial: the LEGEND-1000 moderator study
#
# This tutorial walks through rarefy's manual loop on real Geant4 results: the public tables
# of the LEGEND-1000 neutron-moderator design study (309 low-fidelity and 10 high-fidelity
# runs; provenance in `examples/legend/data/PROVENANCE.md`). The rare event is a neutron
# capture on Ge-76; the target is its rate in nuclei/(kg·yr) as a function of five design
# parameters of a neutron moderator.
#
# 1. **fit** a two-fidelity AR1 surrogate on the first table, with cross-validation;
# 2. **validate** it on runs it has never seen (the second table);
# 3. **suggest** the next runs to simulate;
# 4. **ingest** their results once they have been simulated elsewhere.
#
# Every step is one function and one command (`rarefy fit`, `rarefy validate`,
# `rarefy suggest`, `rarefy ingest`). The script runs from the repository root.

# %%
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import rarefy
from rarefy.config import config_from_dict

logging.basicConfig(level=logging.WARNING)
EXAMPLE = Path("examples/legend")
RUNS = Path("runs/tutorial")

# %% [markdown]
# ## 1. The config
#
# `examples/legend/legend.yaml` is the recommended model: the LF and HF Ge-77 rates in
# physical units, each with Poisson noise from its capture count (`noise: {counts: ...}`).
# It reads both tables; here we train on the first one only (303 LF and 4 HF runs) and keep
# the second (6 LF and 6 HF runs) for validation. Small settings (2 optimiser restarts) keep
# the tutorial fast. The same override from the command line: `--set surrogate.restarts=2`.

# %%
cfg = rarefy.load_config(EXAMPLE / "legend.yaml")
raw = cfg.model_dump(mode="json", exclude_none=True)
raw["data"]["paths"] = [str(cfg.data.paths[0])]        # the training table only
raw["surrogate"]["restarts"] = 2
cfg = config_from_dict(raw)
print(cfg.fidelity_names, cfg.target, [str(p) for p in cfg.data.paths])

# %% [markdown]
# ## 2. Fit, with cross-validation
#
# `rarefy.fit` validates all input before it writes anything, fits the surrogate and saves
# it with the resolved config in a run directory. `cv=4` adds 4-fold cross-validation over
# the 4 HF runs (leave one out): each HF run is held out together with every run at the
# same design.
#
# Command line: `rarefy fit CONFIG --out runs/tutorial/fit --cv 4`.

# %%
result = rarefy.fit(cfg, RUNS / "fit", cv=4)
print(sorted(p.name for p in (RUNS / "fit").iterdir()))
print({k: round(v, 3) for k, v in result.cv.metrics.items()})

# %% [markdown]
# ## 3. Validate on runs the fit has never seen
#
# `Ge77_rates_new_samples_v1.6.csv` holds 6 further HF runs. `rarefy.validate` predicts the
# target fidelity at their designs and reports coverage and errors.
#
# Command line: `rarefy validate runs/tutorial/fit DATA --json runs/tutorial/validate.json`.

# %%
held_out = EXAMPLE / "data" / "Ge77_rates_new_samples_v1.6.csv"
report = rarefy.validate(RUNS / "fit", held_out, json_out=RUNS / "validate.json")
print(report.metrics)

# %% [markdown]
# The surrogate is a BoTorch model; predictions are torch tensors in the rate's units.

# %%
surrogate = result.surrogate
space = cfg.space.build()
designs = space.sample(3, seed=1)
mean, std = surrogate.predict(designs, "hf")
print(pd.DataFrame({"rate": mean.detach().numpy(), "std": std.detach().numpy()}))

# %% [markdown]
# ## 4. Suggest the next runs
#
# `rarefy.suggest` refits the surrogate on the run directory's rates and proposes `n` feasible
# runs (design and fidelity) with the config's `acquisition` settings: by default integrated
# variance reduction of the HF prediction per CPU-hour. Only the HF runs have a nominal cost
# here (`cost_cpu_h: 170`), so HF runs are proposed. The LEGEND tables do not record how many
# events a run threw; rarefy takes the run size that gives a run its count noise, `k / rate`,
# from the fidelity's runs (`events=` or `--events` sets it explicitly). It writes
# `suggestions.csv`.
#
# Command line: `rarefy suggest runs/tutorial/fit --n 2`.

# %%
suggestions = rarefy.suggest(RUNS / "fit", n=2)
print(suggestions.to_string(float_format="%.4g"))

# %% [markdown]
# ## 5. Simulate them elsewhere, then ingest
#
# In the real study the suggested runs go to Geant4. `rarefy ingest` takes a file of runs
# (design columns, `fidelity`, count `k`, events `n`), of events (one `outcome` per event),
# or, as here, rows in the format of the config's own data files, read like `rarefy fit`
# reads them, so the rates keep the data's units (nuclei/(kg·yr), with count noise from
# `y_raw`). A stand-in replaces Geant4 so that the tutorial runs anywhere: it draws each
# run's count from a Poisson law at the surrogate's predicted rate times the run size.

# %%
rng = np.random.default_rng(0)
pred = surrogate.predict(suggestions[space.names], "hf")[0].detach().numpy()
k = rng.poisson(np.clip(pred, 0, None) * suggestions["events"].to_numpy())
columns = {name: column for column, name in cfg.data.columns.items()}   # rarefy name -> file column
done = pd.DataFrame({columns[name]: suggestions[name] for name in space.names})
done["Fidelity"] = 1.0                                          # the HF rows of the LEGEND tables
done["y_raw"] = k
done["y_rGe77[nuc/(kg*yr)]"] = k / suggestions["events"].to_numpy()
done.to_csv(RUNS / "results.csv", index=False)

ingested = rarefy.ingest(RUNS / "fit", [RUNS / "results.csv"])
print(ingested.n_new, "new runs in", ingested.path)
print(pd.read_parquet(ingested.path)[["fidelity", "rate", "var"]])

# %% [markdown]
# Ingesting the same file again adds nothing; a file with a design outside the bounds, an
# unknown fidelity or a bad count is refused with one line naming the file, column and row,
# before anything is written.
#
# ## 6. And again
#
# The next suggestion is fitted on the training table plus the ingested runs.

# %%
print(rarefy.suggest(RUNS / "fit", n=1).to_string(float_format="%.4g"))

# %% [markdown]
# Next: [the closed loop](guides/run.md) runs simulate → fit → suggest automatically when
# rarefy can call the simulator itself.
