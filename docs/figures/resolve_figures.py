"""Draw the figure of docs/resolve.md and print the numbers behind its tables (run from the repository root).

    python docs/figures/resolve_figures.py [--surrogate RUN_DIR]

- ``docs/assets/resolve_efficiency.png``: the BBH formation efficiency ε(Z) (mergers per M☉
  of star formation) of rarefy's COSMIC data, against the ε that R = ε · SFRD(0) needs for
  the GWTC-3 rate, with RESOLVE's and rarefy's metallicity posteriors marked.

  * runs of ``examples/bbh/data/rates*.parquet`` (all HF and LF runs, α_CE, σ_BH, σ_NS
    spread over the design space by their Latin hypercube / Sobol designs), pooled in
    0.5-dex bins of Z: ε = Σk / (Σn · m_b), m_b = 498.0 M☉ per evolved binary;
  * ``examples/bbh/data/efficiency.parquet`` (``benchmarks/bbh_efficiency.py``): fresh
    COSMIC runs at α_CE = 1, σ_BH = σ_NS = 265 km/s, ε = Σk / Σmsun per Z;
  * the count-mode PCE of ``examples/bbh/infer.yaml`` (fitted here, or loaded from the
    ``surrogate/`` of a ``rarefy infer`` run directory): its mean ε over the prior of
    (α_CE, σ_BH, σ_NS), and at α_CE = 1, σ = 265 km/s.

  Error bars: central 68% Poisson intervals of k (Garwood); zero counts: the 84% upper
  limit 1.84 / M as an arrow.
- Prints one JSON line: the normalisation conventions (M☉ per evolved massive binary, by
  quadrature), ε per bin, and where each ε(Z) crosses the ε that R = 17 Gpc⁻³ yr⁻¹ needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.integrate import quad
from scipy.stats import chi2

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "bbh" / "data"
ASSETS = ROOT / "docs" / "assets"
MSUN_PER_BINARY = 498.0          # CosmicBBH().msun_per_binary(100_000, seed=0), examples/bbh/infer.yaml
SFRD0 = 0.015                    # M☉ yr⁻¹ Mpc⁻³
R_OBS, R_PLUS, R_MINUS = 17.0, 10.0, 6.7   # GWTC-3, Gpc⁻³ yr⁻¹
RESOLVE_Z = (0.0172, 0.0172 - 0.0062, 0.0172 + 0.0079)


def msun_per_massive_binary(breaks: list[float], slopes: list[float], fbin: float, qmin: float,
                            mcut: float = 8.0) -> float:
    """Star-forming mass (M☉) per binary with both ZAMS masses above ``mcut``.

    Primaries from the broken power law dN/dm ∝ m^-slopes[i] on [breaks[i], breaks[i+1]]
    (continuous), a companion with probability ``fbin``, q = m2/m1 uniform on [qmin, 1]:
    M / N = E[m1] (1 + fbin E[q]) / (fbin · P(m1 > mcut, q m1 > mcut)).
    """
    coef = [1.0]
    for i in range(1, len(slopes)):
        coef.append(coef[-1] * breaks[i] ** (slopes[i] - slopes[i - 1]))

    def integral(g, lo: float, hi: float) -> float:
        total = 0.0
        for i, s in enumerate(slopes):
            a, b = max(lo, breaks[i]), min(hi, breaks[i + 1])
            if a < b:
                total += quad(lambda m, c=coef[i], s=s: c * m ** -s * g(m), a, b, limit=200)[0]
        return total

    n = integral(lambda m: 1.0, breaks[0], breaks[-1])
    mean_m1 = integral(lambda m: m, breaks[0], breaks[-1]) / n
    p_massive = integral(lambda m: max(0.0, (1 - max(mcut / m, qmin)) / (1 - qmin)), mcut, breaks[-1]) / n
    return mean_m1 * (1 + fbin * (1 + qmin) / 2) / (fbin * p_massive)


def conventions() -> dict[str, float]:
    """M☉ per evolved massive binary under the normalisation conventions compared in docs/resolve.md."""
    kroupa = ([0.08, 0.5, 150.0], [1.3, 2.3])
    full = ([0.01, 0.08, 0.5, 150.0], [0.3, 1.3, 2.3])
    compas = ([0.01, 0.08, 0.5, 200.0], [0.3, 1.3, 2.3])
    return {
        "cosmic_as_run": msun_per_massive_binary(*kroupa, 0.5, 0.1),
        "imf_to_0.01": msun_per_massive_binary(*full, 0.5, 0.1),
        "binary_fraction_1": msun_per_massive_binary(*kroupa, 1.0, 0.1),
        "compas_convention": msun_per_massive_binary(*compas, 0.7, 0.0),
    }


def poisson68(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central 68.3% interval of a Poisson mean given k counts (Garwood); lower 0 at k = 0."""
    k = np.asarray(k, dtype=float)
    lo = np.where(k > 0, chi2.ppf(0.1587, 2 * k) / 2, 0.0)
    hi = chi2.ppf(0.8413, 2 * k + 2) / 2
    return lo, hi


def binned_campaign() -> pd.DataFrame:
    """ε per 0.5-dex bin of Z from all runs of examples/bbh (α_CE, σ spread over the design space)."""
    runs = pd.concat([pd.read_parquet(DATA / "rates.parquet"), pd.read_parquet(DATA / "rates_extra.parquet")])
    edges = np.arange(-4.0, -1.49, 0.5)
    runs["bin"] = pd.cut(runs["log10_z"], edges, include_lowest=True)
    g = runs.groupby("bin", observed=True).agg(k=("k", "sum"), n=("n", "sum"), runs=("k", "size"),
                                               log10_z=("log10_z", "mean"))
    g["msun"] = g["n"] * MSUN_PER_BINARY
    g["z_lo"] = [10 ** b.left for b in g.index]
    g["z_hi"] = [10 ** b.right for b in g.index]
    return g.reset_index(drop=True)


def fixed_alpha() -> pd.DataFrame | None:
    """ε per Z of the fresh runs at α_CE = 1, σ_BH = σ_NS = 265 km/s (None if not generated)."""
    path = DATA / "efficiency.parquet"
    if not path.exists():
        return None
    d = pd.read_parquet(path)
    g = d.groupby("z").agg(k=("k", "sum"), n=("n", "sum"), msun=("msun", "sum")).reset_index()
    g["log10_z"] = np.log10(g["z"])
    return g


def surrogate_curves(surrogate_dir: str | None, zgrid: np.ndarray) -> dict[str, np.ndarray]:
    """ε(Z) of the infer.yaml PCE: mean over the prior of (α_CE, σ_BH, σ_NS), and at α_CE = 1, σ = 265 km/s."""
    from rarefy.config import as_config

    cfg, _ = as_config(ROOT / "examples" / "bbh" / "infer.yaml")
    if surrogate_dir:
        from rarefy.surrogate.factory import load_surrogate
        model = load_surrogate(Path(surrogate_dir) / "surrogate")
    else:
        from rarefy.data.mapping import load_rate_table
        from rarefy.jobs.fit import build_surrogate
        model = build_surrogate(cfg).fit(load_rate_table(cfg))
    rng = np.random.default_rng(0)
    m = 2000
    others = np.column_stack([rng.uniform(0.1, 10.0, m), rng.uniform(0, 1000, m), rng.uniform(0, 1000, m)])
    prior_mean, fixed = [], []
    for lz in np.log10(zgrid):
        x = np.column_stack([np.full(m, lz), others])
        mean, _ = model.predict(x, "hf")
        prior_mean.append(float(mean.detach().numpy().mean()))
        mean1, _ = model.predict(np.array([[lz, 1.0, 265.0, 265.0]]), "hf")
        fixed.append(float(mean1.detach().numpy()[0]))
    return {"prior_mean": np.array(prior_mean) / MSUN_PER_BINARY, "alpha1": np.array(fixed) / MSUN_PER_BINARY}


def crossing(log10_z: np.ndarray, eps: np.ndarray, target: float) -> float | None:
    """Z where log ε(log Z), linearly interpolated, first falls below ``target`` (None if it never does)."""
    le = np.log10(np.maximum(eps, 1e-300))
    lt = np.log10(target)
    for i in range(len(le) - 1):
        if le[i] >= lt > le[i + 1]:
            f = (le[i] - lt) / (le[i] - le[i + 1])
            return float(10 ** (log10_z[i] + f * (log10_z[i + 1] - log10_z[i])))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surrogate", help="a rarefy infer run directory of examples/bbh/infer.yaml (default: fit)")
    args = ap.parse_args()

    eps_need = R_OBS / (SFRD0 * 1e9)
    eps_band = ((R_OBS - R_MINUS) / (SFRD0 * 1e9), (R_OBS + R_PLUS) / (SFRD0 * 1e9))
    camp = binned_campaign()
    fixed = fixed_alpha()
    zgrid = np.logspace(-4, np.log10(0.03), 41)
    curves = surrogate_curves(args.surrogate, zgrid)

    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot()
    ax.axhspan(*eps_band, color="0.85", label="ε for R = 17 (+10/−6.7) Gpc⁻³ yr⁻¹, SFRD(0) = 0.015")
    ax.axhline(eps_need, color="0.5", lw=0.8)
    ax.axvspan(RESOLVE_Z[1], RESOLVE_Z[2], color="tab:red", alpha=0.12, label="RESOLVE: Z = 0.0172 (68%)")

    def points(frame: pd.DataFrame, color: str, marker: str, label: str, xerr: bool) -> None:
        lo, hi = poisson68(frame["k"].to_numpy())
        eps = frame["k"].to_numpy() / frame["msun"].to_numpy()
        z = 10 ** frame["log10_z"].to_numpy()
        det = frame["k"].to_numpy() > 0
        xe = None
        if xerr:
            xe = np.vstack([z - frame["z_lo"].to_numpy(), frame["z_hi"].to_numpy() - z])
        ax.errorbar(z[det], eps[det], yerr=np.vstack([eps - lo / frame["msun"], hi / frame["msun"] - eps])[:, det],
                    xerr=None if xe is None else xe[:, det], fmt=marker, color=color, capsize=2, label=label)
        ul = 1.84 / frame["msun"].to_numpy()
        if (~det).any():
            ax.errorbar(z[~det], ul[~det], yerr=0.4 * ul[~det], uplims=True, fmt=marker, mfc="none", color=color,
                        xerr=None if xe is None else xe[:, ~det], capsize=2)

    points(camp, "tab:blue", "o", "examples/bbh runs, α_CE ∈ [0.1, 10], σ ∈ [0, 1000] km/s (0.5-dex bins)", True)
    if fixed is not None:
        points(fixed, "tab:green", "s", "fresh runs, α_CE = 1, σ_BH = σ_NS = 265 km/s", False)
    ax.plot(zgrid, curves["prior_mean"], color="tab:blue", lw=1, label="PCE of infer.yaml, mean over the prior")
    ax.plot(zgrid, curves["alpha1"], color="tab:green", lw=1, ls="--", label="PCE at α_CE = 1, σ = 265 km/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(8e-5, 0.035)
    ax.set_ylim(1e-8, 3e-4)
    ax.set_xlabel("metallicity Z")
    ax.set_ylabel("ε: BBH mergers per M☉ formed  [M☉⁻¹]")
    ax.set_title("BBH formation efficiency of rarefy's COSMIC adapter (498 M☉ per evolved binary)", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    ASSETS.mkdir(parents=True, exist_ok=True)
    fig.savefig(ASSETS / "resolve_efficiency.png", dpi=130)

    out = {
        "msun_per_massive_binary": {k: round(v, 1) for k, v in conventions().items()},
        "eps_needed": eps_need, "eps_needed_band": list(eps_band),
        "campaign_bins": [{"log10_z_mean": round(r.log10_z, 3), "z_range": [round(r.z_lo, 5), round(r.z_hi, 5)],
                           "runs": int(r.runs), "k": int(r.k), "n": int(r.n), "eps": r.k / r.msun}
                          for r in camp.itertuples()],
        "fixed_alpha1": None if fixed is None else [{"z": r.z, "k": int(r.k), "n": int(r.n), "eps": r.k / r.msun}
                                                     for r in fixed.itertuples()],
        "pce_crossing_z": {name: crossing(np.log10(zgrid), c, eps_need) for name, c in curves.items()},
        "pce_eps_at_0.0172": {name: float(np.exp(np.interp(np.log(0.0172), np.log(zgrid), np.log(c))))
                              for name, c in curves.items()},
    }
    if fixed is not None:
        out["fixed_crossing_z"] = crossing(fixed["log10_z"].to_numpy(), (fixed["k"] / fixed["msun"]).to_numpy(),
                                           eps_need)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
