"""The ``infer`` job: config -> surrogate -> emcee posterior -> RUN_DIR (Python equivalent of ``rarefy infer``).

Run-directory layout::

    RUN_DIR/config.yaml      the resolved config
    RUN_DIR/surrogate/       the surrogate used (saved copy)
    RUN_DIR/posterior.nc     arviz InferenceData (posterior, sample_stats) in netCDF
    RUN_DIR/corner.png       corner plot of the posterior
    RUN_DIR/summary.json     per parameter: median, 68%/95% credible intervals, R-hat, ESS, τ; timing;
                             provenance (rarefy version, seed, config hash, UTC time)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import truncnorm

from ..config import InferConfig, RunConfig, as_config
from ..data.rundir import SURROGATE_DIR, check_out_dir, run_dir_lock, write_config
from ..errors import InputError, fmt_value
from ..io import atomic_path, check_output, staged_run_dir, write_json
from ..provenance import provenance
from ..space import DesignSpace
from .likelihood import RateLikelihood
from .rates import FullRateModel, SimpleRateModel
from .sampler import SamplerResult, run_emcee
from .summary import corner_plot, credible_summary

log = logging.getLogger(__name__)

__all__ = ["infer", "InferResult", "Posterior", "make_posterior"]


class Posterior:
    """Vectorised log-posterior over θ: priors + rate likelihood through the surrogate."""

    def __init__(self, surrogate: Any, space: DesignSpace, icfg: InferConfig, fidelity: str,
                 source: str = "<config>") -> None:
        self.surrogate, self.space, self.fidelity = surrogate, space, fidelity
        self.names = space.names
        lo, hi = (np.asarray(b, dtype=float) for b in space.bounds)
        self.lo, self.hi = lo.copy(), hi.copy()
        self.normal: dict[int, tuple[float, float]] = {}
        for name, prior in icfg.priors.items():
            if name not in self.names:
                raise InputError(f"infer.priors: unknown parameter {name!r}; parameters: {self.names}", file=source)
            i = self.names.index(name)
            self.lo[i] = lo[i] if prior.low is None else prior.low
            self.hi[i] = hi[i] if prior.high is None else prior.high
            if not (lo[i] <= self.lo[i] < self.hi[i] <= hi[i]):
                raise InputError(f"infer.priors.{name}: range [{self.lo[i]}, {self.hi[i]}] must lie within the "
                                 f"design bounds [{lo[i]}, {hi[i]}]", file=source)
            if prior.kind == "normal":
                self.normal[i] = (float(prior.mu), float(prior.sigma))
        self.rate_model = make_rate_model(icfg, space, source)
        obs = icfg.observation
        self.likelihood = RateLikelihood(obs.rate, obs.plus, obs.minus, icfg.marginalise)

    def log_prior(self, x: np.ndarray) -> np.ndarray:
        inside = np.all((x >= self.lo) & (x <= self.hi), axis=-1)
        lp = np.where(inside, 0.0, -np.inf)
        for i, (mu, sd) in self.normal.items():
            lp = lp - 0.5 * ((x[..., i] - mu) / sd) ** 2
        return lp

    def predicted_rate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the local merger rate R (Gpc⁻³ yr⁻¹) at designs ``x`` (n, d).

        R = Σ_g w_g · rate(x_g) over the rate model's quadrature points; its variance is
        wᵀ C w with C the surrogate's joint predictive covariance at the points (when the
        surrogate has ``joint``; otherwise the fully-correlated bound (Σ_g w_g s_g)²).
        """
        pts, w = self.rate_model.points(np.atleast_2d(x))
        if pts.shape[1] == 1:
            mean, std = self.surrogate.predict(pts[:, 0, :], self.fidelity)
            return mean.detach().numpy() * w[:, 0], std.detach().numpy() * w[:, 0]
        if hasattr(self.surrogate, "joint"):
            m, c = self.surrogate.joint(torch.as_tensor(pts), self.fidelity)
            m, c = m.detach().numpy(), c.detach().numpy()
            var = np.einsum("wg,wgh,wh->w", w, c, w)
            return np.einsum("wg,wg->w", w, m), np.sqrt(np.maximum(var, 0.0))
        W, G, d = pts.shape
        mean, std = self.surrogate.predict(pts.reshape(-1, d), self.fidelity)
        mean, std = mean.detach().numpy().reshape(W, G), std.detach().numpy().reshape(W, G)
        return (w * mean).sum(1), (w * std).sum(1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        lp = self.log_prior(x)
        ok = np.isfinite(lp)
        if ok.any():
            r_mean, r_std = self.predicted_rate(x[ok])
            lp[ok] = lp[ok] + self.likelihood.loglike(r_mean, r_std)
        return lp

    def prior_ppf(self, u: np.ndarray) -> np.ndarray:
        """Map points ``u`` of the unit cube (n, d) to θ by each parameter's prior inverse CDF.

        The priors are independent, so a stratified ``u`` (e.g. a Latin hypercube) gives
        prior draws whose marginals are evenly covered.
        """
        u = np.atleast_2d(np.asarray(u, dtype=float))
        x = self.lo + u * (self.hi - self.lo)
        for i, (mu, sd) in self.normal.items():
            a, b = (self.lo[i] - mu) / sd, (self.hi[i] - mu) / sd
            x[:, i] = truncnorm.ppf(u[:, i], a, b, loc=mu, scale=sd)
        return x

    def initial(self, walkers: int, rng: np.random.Generator) -> np.ndarray:
        """Starting points: draws from the prior."""
        p0 = rng.uniform(self.lo, self.hi, size=(walkers, len(self.names)))
        for i, (mu, sd) in self.normal.items():
            a, b = (self.lo[i] - mu) / sd, (self.hi[i] - mu) / sd
            p0[:, i] = truncnorm.rvs(a, b, loc=mu, scale=sd, size=walkers, random_state=rng)
        return p0


def make_rate_model(icfg: InferConfig, space: DesignSpace, source: str = "<config>") -> SimpleRateModel | FullRateModel:
    """The config's rate model: ``simple`` (ε · sfrd0) or ``full`` (delay times, metallicity spread)."""
    if icfg.rate_model == "simple":
        return SimpleRateModel(icfg.msun_per_event, icfg.sfrd0)
    from ..data.readers import read_frame
    from .cosmology import FlatLCDM

    fc = icfg.full
    assert fc is not None
    if fc.z_param not in space.names:
        raise InputError(f"infer.full.z_param: {fc.z_param!r} is not a parameter ({space.names})", file=source)
    frame = read_frame(fc.delays)
    if fc.delay_column not in frame.columns:
        raise InputError(f"no delay-time column {fc.delay_column!r} (columns: {list(frame.columns)})",
                         file=fc.delays, column=fc.delay_column)
    delays = pd.to_numeric(frame[fc.delay_column], errors="coerce").to_numpy(float)
    text = np.isnan(delays) & frame[fc.delay_column].notna().to_numpy()
    if text.any():
        i = int(np.argmax(text))
        raise InputError(f"value {fmt_value(frame[fc.delay_column].iloc[i])} is not a number", file=fc.delays,
                         column=fc.delay_column, row=i)
    delays = delays[np.isfinite(delays)]
    if len(delays) == 0 or np.any(delays < 0):
        raise InputError("delay times must be finite, >= 0 and at least one", file=fc.delays, column=fc.delay_column)
    i = space.names.index(fc.z_param)
    lo, hi = (float(np.asarray(b)[i]) for b in space.bounds)
    return FullRateModel(icfg.msun_per_event, delays, space.names, (lo, hi), fc.z_param, fc.z_spread_dex,
                         fc.z_evolution, fc.grid, FlatLCDM(fc.h0, fc.omega_m))


def make_posterior(cfg: RunConfig, surrogate: Any) -> Posterior:
    """The posterior a config's ``infer`` section describes, with a fitted ``surrogate``."""
    icfg = cfg.infer
    if icfg is None:
        raise InputError("the config has no 'infer' section")
    fidelity = icfg.fidelity or cfg.target
    if fidelity not in surrogate.fidelities:
        raise InputError(f"infer.fidelity: the surrogate has no fidelity {fidelity!r} (has {surrogate.fidelities})")
    return Posterior(surrogate, cfg.space.build(), icfg, fidelity)


def _surrogate(cfg: RunConfig) -> Any:
    icfg = cfg.infer
    if icfg is not None and icfg.surrogate is not None:
        from ..surrogate.factory import load_surrogate

        return load_surrogate(Path(icfg.surrogate) / "surrogate")
    from ..data.mapping import load_rate_table
    from ..jobs.fit import build_surrogate

    return build_surrogate(cfg).fit(load_rate_table(cfg))


@dataclass
class InferResult:
    """What :func:`infer` produced."""

    summary: dict[str, Any]
    sampler: SamplerResult
    run_dir: Path


def infer(config: str | os.PathLike[str] | RunConfig, out: str | os.PathLike[str],
          surrogate: Any = None, progress: Callable[[int, int], None] | None = None,
          overrides: Sequence[str] = ()) -> InferResult:
    """Sample the posterior of θ given the observed merger rate; write posterior.nc, corner.png, summary.json.

    ``surrogate``: an already fitted surrogate (default: the one ``infer.surrogate`` names,
    or one fitted on the config's data). Deterministic for the config's seed. ``out`` must
    be new, empty or a ``rarefy infer`` run directory
    (:func:`rarefy.data.rundir.check_out_dir`); it is locked for the whole job.
    ``overrides``: ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    """
    t0 = time.perf_counter()
    cfg, source = as_config(config, overrides)
    if cfg.infer is None:
        raise InputError("the config has no 'infer' section", file=source)
    check_output(out, folder=True)
    check_out_dir(out, "infer")
    icfg = cfg.infer
    prior = Posterior(None, cfg.space.build(), icfg, icfg.fidelity or str(cfg.target), str(source or "<config>"))
    seed = cfg.seed if icfg.seed is None else icfg.seed
    _check_start(prior.initial(icfg.walkers, np.random.default_rng(seed)), prior.names)  # before any fit
    with run_dir_lock(out, "rarefy infer", kind="infer"):
        return _infer(cfg, out, surrogate, t0)


def _check_start(p0: np.ndarray, names: Sequence[str]) -> None:
    """Refuse starting points the ensemble cannot move from (the same test emcee makes, without its SVD
    failing on numbers too large to square): finite, spread in every parameter, well conditioned."""
    with np.errstate(all="ignore"):
        spread = np.ptp(p0, axis=0) if np.isfinite(p0).all() else np.full(p0.shape[1], np.nan)
        c = (p0 - p0.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        c = c / np.sqrt((c**2).sum(axis=0))
        ok = bool(np.isfinite(spread).all() and (spread > 0).all() and np.isfinite(c).all())
        try:
            ok = ok and float(np.linalg.cond(c)) <= 1e8
        except np.linalg.LinAlgError:
            ok = False
    if not ok:
        bad = [n for n, s in zip(names, spread) if not (np.isfinite(s) and s > 0)]
        raise InputError("infer: the walkers' starting points drawn from the prior are degenerate "
                         f"({', '.join(bad) if bad else 'ill-conditioned'}); check the space bounds and the priors")


def _infer(cfg: RunConfig, out: str | os.PathLike[str], surrogate: Any, t0: float) -> InferResult:
    """The work of :func:`infer` (its config checked, ``out`` locked)."""
    icfg = cfg.infer
    assert icfg is not None
    sur = surrogate if surrogate is not None else _surrogate(cfg)
    post = make_posterior(cfg, sur)
    seed = cfg.seed if icfg.seed is None else icfg.seed
    rng = np.random.default_rng(seed)
    res = run_emcee(post, post.names, post.initial(icfg.walkers, rng), icfg.steps, icfg.burn, icfg.thin, seed=seed, moves=icfg.moves)
    flat = res.chains.reshape(-1, len(post.names))
    samples = {n: flat[:, i] for i, n in enumerate(post.names)}
    if "log10_z" in samples:
        samples["z"] = 10.0 ** samples["log10_z"]
    r_mean, _ = post.predicted_rate(flat[:: max(1, len(flat) // 2000)])
    summary: dict[str, Any] = {
        "parameters": credible_summary(samples),
        "rhat": res.rhat, "ess_bulk": res.ess, "autocorr_steps": res.autocorr,
        "max_rhat": max(res.rhat.values()), "acceptance": res.acceptance,
        "predicted_rate_gpc3_yr": credible_summary({"R": r_mean})["R"],
        "observation": icfg.observation.model_dump(), "walkers": icfg.walkers, "steps": icfg.steps,
        "burn": icfg.burn, "thin": icfg.thin, "moves": icfg.moves, "seed": seed, "rate_model": icfg.rate_model,
        "surrogate_kind": type(sur).__name__,
        "sampling_seconds": res.seconds, "provenance": provenance(cfg, seed),
    }
    with staged_run_dir(out) as stage:
        write_config(stage, cfg)
        sur.save(stage / SURROGATE_DIR)
        with atomic_path(stage / "posterior.nc") as tmp:
            res.idata.to_netcdf(str(tmp))
        corner_plot(flat, post.names, stage / "corner.png",
                    ranges=[(float(a), float(b)) for a, b in zip(post.lo, post.hi)])
        summary["wall_seconds"] = time.perf_counter() - t0
        write_json(stage / "summary.json", summary)
    log.info("inferred %s in %.1f s (max R-hat %.4f) -> %s", post.names, summary["wall_seconds"], summary["max_rhat"], out)
    return InferResult(summary, res, Path(out))
