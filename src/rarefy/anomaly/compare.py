"""CATHODE side by side with idealized AD, supervised, CWoLa hunting and ANODE on a synthetic bump hunt.

:func:`run_methods` takes one data set of :class:`~rarefy.anomaly.data.BumpHunt` and
scores one common labelled test set in the SR (``test_background`` true background and
``test_signal`` true signal events, drawn from the known densities, seen by no method
in training) with every method; see :mod:`rarefy.anomaly.cathode` for the methods and
the SIC. The optimal SIC comes from the exact x-only likelihood ratio
(:meth:`BumpHunt.log_lr_sr`) on the same test set. Each method's classifiers use the
same :class:`ClassifierSettings`, folds and seed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .cathode import (Cathode, ClassifierSettings, FlowSettings, fit_conditional_flow, kfold_classify, null_test,
                      sic_curve, sic_metrics)
from .data import BumpHunt, Events

__all__ = ["METHODS", "CompareSettings", "run_methods"]

log = logging.getLogger(__name__)

METHODS = ("cathode", "idealized", "supervised", "cwola", "anode")


@dataclass(frozen=True)
class CompareSettings:
    """Sizes of a comparison: test events in the SR, the ε_B floor of max SIC (``min_background`` events),
    the CWoLa sideband width on each side of the SR (mass units), the SR-flow settings of ANODE,
    the supervised training sizes, and the methods to run."""

    test_background: int = 200_000
    test_signal: int = 20_000
    min_background: int = 50
    cwola_sideband: float = 0.4
    anode_flow: FlowSettings = FlowSettings(transforms=2, hidden=(32, 32), epochs=20, patience=3, ensemble=1)
    supervised_signal: int = 10_000
    methods: tuple[str, ...] = METHODS
    curves: bool = False


def _test_set(hunt: BumpHunt, s: CompareSettings, seed: int) -> tuple[Events, Events]:
    rng = np.random.default_rng([seed, 99])
    return hunt.sample_background(s.test_background, rng, hunt.sr), hunt.sample_signal(s.test_signal, rng, hunt.sr)


def _metrics(sig: np.ndarray, bkg: np.ndarray, s: CompareSettings) -> dict[str, Any]:
    out: dict[str, Any] = sic_metrics(sig, bkg, s.min_background)
    if s.curves:
        es, sic = sic_curve(sig, bkg, s.min_background)
        idx = np.unique(np.linspace(0, len(es) - 1, 200).astype(int)) if len(es) else np.zeros(0, int)
        out["curve"] = {"eps_s": es[idx].tolist(), "sic": sic[idx].tolist()}
    return out


def run_methods(hunt: BumpHunt, data: Events, seed: int, *, flow: FlowSettings = FlowSettings(),
                classifier: ClassifierSettings = ClassifierSettings(), oversample: int = 4,
                settings: CompareSettings = CompareSettings(), keep_scores: bool = False) -> dict[str, Any]:
    """Every method of ``settings.methods`` on ``data``; SIC metrics per method on the common SR test set.

    Returns ``{"optimal": metrics, METHOD: {metrics..., "seconds": s}, "null": {...}, "sr": {...}}``;
    ``null`` is CATHODE's excess test (:func:`rarefy.anomaly.cathode.null_test`) on the SR data.
    ``keep_scores``: also ``"cathode_oof"``, CATHODE's k-fold result
    (:class:`~rarefy.anomaly.cathode.KFoldScores`) on the SR data (label 1) and flow samples (label 0).
    """
    tb, ts = _test_set(hunt, settings, seed)
    extra = (np.concatenate([ts.x, tb.x]),)
    n_s = len(ts)
    sr = hunt.in_sr(data.m)
    d_sr = data.select(sr)
    out: dict[str, Any] = {"sr": {"events": int(sr.sum()), "signal": int(d_sr.y.sum()),
                                  "s_over_b": float(d_sr.y.sum() / max(1, (d_sr.y == 0).sum())),
                                  "s_over_sqrt_b": float(d_sr.y.sum() / np.sqrt(max(1, (d_sr.y == 0).sum())))}}
    out["optimal"] = _metrics(hunt.log_lr_sr(ts.x), hunt.log_lr_sr(tb.x), settings)

    def record(name: str, scores: np.ndarray, t0: float, **more: Any) -> None:
        m = _metrics(scores[:n_s], scores[n_s:], settings)
        m.update(more)
        m["seconds"] = time.perf_counter() - t0
        out[name] = m
        log.info("%s: SIC(0.2) %.2f, max SIC %.2f, %.1f s", name, m["sic_at_0.2"], m["max_sic"], m["seconds"])

    rng = np.random.default_rng([seed, 98])
    if "cathode" in settings.methods or "anode" in settings.methods:
        t0 = time.perf_counter()
        cath = Cathode(hunt.sr, flow=flow, classifier=classifier, oversample=oversample, seed=seed)
        sb_flow = cath.fit_background(data.m, data.x)
        t_flow = time.perf_counter() - t0
        if "cathode" in settings.methods:
            _, xs = cath.sample_background(sb_flow, d_sr.m)
            k = kfold_classify(d_sr.x, xs, classifier, seed, extra, name="CATHODE")
            out["null"] = null_test(k.scores1, k.fold1, k.scores0, k.fold0)
            if keep_scores:
                out["cathode_oof"] = k
            record("cathode", k.extra[0], t0, flow_epochs=len(sb_flow.history))
        if "anode" in settings.methods:
            t1 = time.perf_counter()
            half = np.random.default_rng([seed, 6]).permutation(len(d_sr)) % 2
            lr = np.zeros(len(extra[0]))
            m_test = np.concatenate([ts.m, tb.m])
            for h in (0, 1):
                f = fit_conditional_flow(d_sr.x[half == h], d_sr.m[half == h], settings.anode_flow, seed + h,
                                         name=f"ANODE SR flow {h}")
                lr += 0.5 * (f.log_prob(extra[0], m_test))
            lr -= sb_flow.log_prob(extra[0], m_test)
            record("anode", lr, t1 - t_flow)
    if "idealized" in settings.methods:
        t0 = time.perf_counter()
        ref = hunt.sample_background(oversample * len(d_sr), rng, hunt.sr)
        k = kfold_classify(d_sr.x, ref.x, classifier, seed, extra, name="idealized")
        record("idealized", k.extra[0], t0)
    if "supervised" in settings.methods:
        t0 = time.perf_counter()
        sig = hunt.sample_signal(settings.supervised_signal, rng, hunt.sr)
        bkg = hunt.sample_background(oversample * len(d_sr), rng, hunt.sr)
        k = kfold_classify(sig.x, bkg.x, classifier, seed, extra, name="supervised")
        record("supervised", k.extra[0], t0)
    if "cwola" in settings.methods:
        t0 = time.perf_counter()
        w = settings.cwola_sideband
        sb = ((data.m >= hunt.sr[0] - w) & (data.m < hunt.sr[0])) | ((data.m >= hunt.sr[1]) & (data.m < hunt.sr[1] + w))
        k = kfold_classify(d_sr.x, data.x[sb], classifier, seed, extra, name="CWoLa")
        record("cwola", k.extra[0], t0)
    return out
