"""Draw the figures of docs/method.md with rarefy itself (run from the repository root).

    python docs/figures/make_figures.py

- ``docs/assets/fusion_toy.png``: a 1-D rare-event toy with known truth. 40 cheap LF runs
  and 5 HF runs, both counted (rate = k/n with Poisson noise from k); an HF-only GP against
  the AR1 multi-fidelity GP fitted on both.
- ``docs/assets/denoise_idea.png``: why denoising works, on the built-in moderator: the
  per-event capture probability t(θ, φ) spans orders of magnitude within one run, and its
  mean over a run's own events tracks the exact rate far better than the run's k/n.
- ``docs/assets/legend_cv_calibration.png``: the calibration plot that
  ``rarefy fit examples/legend/legend.yaml --cv 10`` writes, on the public LEGEND-1000 data.

Deterministic for the seeds below; about a minute on 2 cores.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import rarefy
from rarefy import AR1Surrogate, DesignSpace, Parameter, RateTable, count_variance

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "docs" / "assets"


def rate_lf(x: np.ndarray) -> np.ndarray:
    """Per-event probability of the cheap simulation at design x in [0, 1]."""
    return 1e-4 * (1.0 + 0.6 * np.sin(6.0 * x) + 0.3 * x)


def rate_hf(x: np.ndarray) -> np.ndarray:
    """Per-event probability of the expensive simulation: correlated with LF, biased."""
    return 1.2 * rate_lf(x) - 2e-5 * x + 1e-5


def runs(x: np.ndarray, n: int, fidelity: str, rng: np.random.Generator) -> pd.DataFrame:
    p = rate_lf(x) if fidelity == "lf" else rate_hf(x)
    k = rng.poisson(p * n).astype(float)
    rate = k / n
    return pd.DataFrame({"x": x, "fidelity": fidelity, "rate": rate, "var": count_variance(rate, k, np.full_like(k, n)),
                         "k": k, "n": float(n)})


def fusion_toy(path: Path) -> None:
    rng = np.random.default_rng(3)
    space = DesignSpace([Parameter("x", 0.0, 1.0)])
    lf = runs(np.sort(rng.uniform(0, 1, 40)), 100_000, "lf", rng)        # ~10 counts a run
    hf = runs(np.array([0.08, 0.3, 0.52, 0.74, 0.95]), 2_000_000, "hf", rng)  # ~200 counts a run
    both = RateTable(pd.concat([lf, hf], ignore_index=True), space)
    hf_only = RateTable(hf.reset_index(drop=True), space)
    grid = pd.DataFrame({"x": np.linspace(0, 1, 200)})
    fits = {"HF-only GP (5 HF runs)": AR1Surrogate(space, ["hf"], seed=0).fit(hf_only),
            "AR1 multi-fidelity GP (40 LF + 5 HF runs)": AR1Surrogate(space, ["lf", "hf"], seed=0).fit(both)}
    fig = Figure(figsize=(9.0, 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, sur) in zip(axes, fits.items()):
        mean, std = (t.detach().numpy() for t in sur.predict(grid, "hf"))
        ax.fill_between(grid["x"], 1e4 * (mean - 2 * std), 1e4 * (mean + 2 * std), color="C0", alpha=0.2,
                        label="HF prediction ± 2σ")
        ax.plot(grid["x"], 1e4 * mean, color="C0")
        ax.plot(grid["x"], 1e4 * rate_hf(grid["x"].to_numpy()), "k--", lw=1, label="true HF rate")
        if "AR1" in title:
            ax.errorbar(lf["x"], 1e4 * lf["rate"], 1e4 * np.sqrt(lf["var"]), fmt="o", ms=3, color="C1", alpha=0.5,
                        lw=0.8, label="LF runs (k/n ± count noise)")
        ax.errorbar(hf["x"], 1e4 * hf["rate"], 1e4 * np.sqrt(hf["var"]), fmt="s", ms=5, color="C3",
                    label="HF runs")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("design x")
    axes[0].set_ylabel("rate per event [1e-4]")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.savefig(path)


def denoise_idea(path: Path) -> None:
    sim = rarefy.simulators.get("moderator")
    designs = sim.space.sample(40, seed=4)
    raw, oracle, exact, first_t = [], [], [], None
    for i, (_, row) in enumerate(designs.iterrows()):
        theta = row.to_dict()
        frame = sim.simulate(theta, n=50_000, fidelity="lf", seed=100 + i, with_truth=True).to_pandas()
        if first_t is None:
            first_t = frame["t_true"].to_numpy()
        raw.append(frame["outcome"].mean())
        oracle.append(frame["t_true"].mean())
        exact.append(sim.expected_rate(theta, "lf"))
    raw, oracle, exact = (np.asarray(v) for v in (raw, oracle, exact))
    fig = Figure(figsize=(9.0, 3.4), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2)
    positive = first_t[first_t > 0]
    left.hist(np.log10(positive), bins=60, color="C0")
    left.axvline(np.log10(first_t.mean()), color="k", ls="--", lw=1, label="run mean")
    left.set_xlabel("log10 t(θ, φ), per event")
    left.set_ylabel("events")
    left.set_title(f"one LF run of 50,000 events ({(first_t == 0).mean():.0%} have t = 0)", fontsize=10)
    left.legend(fontsize=8)
    lo, hi = 0.8 * exact.min(), 1.2 * exact.max()
    right.plot(1e5 * exact, 1e5 * raw, "o", ms=4, color="C1", alpha=0.7,
               label=f"raw k/n (r = {np.corrcoef(exact, raw)[0, 1]:.2f})")
    right.plot(1e5 * exact, 1e5 * oracle, "s", ms=4, color="C0",
               label=f"mean t over the run's events (r = {np.corrcoef(exact, oracle)[0, 1]:.2f})")
    right.plot([1e5 * lo, 1e5 * hi], [1e5 * lo, 1e5 * hi], "k--", lw=1)
    right.set_xlabel("exact LF rate [1e-5]")
    right.set_ylabel("run estimate [1e-5]")
    right.set_title("40 designs, one LF run each", fontsize=10)
    right.legend(fontsize=8)
    fig.savefig(path)


def legend_calibration(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rarefy.fit(ROOT / "examples" / "legend" / "legend.yaml", Path(tmp) / "legend", cv=10)
        shutil.copyfile(Path(tmp) / "legend" / "cv_calibration.png", path)


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    fusion_toy(ASSETS / "fusion_toy.png")
    denoise_idea(ASSETS / "denoise_idea.png")
    legend_calibration(ASSETS / "legend_cv_calibration.png")
