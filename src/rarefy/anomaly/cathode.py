"""CATHODE overdensity anomaly detection and the methods it is compared with.

CATHODE (Hallin et al., arXiv 2109.00546) looks for a localised excess of events in a
*signal region* (SR) of a resonant feature m, using auxiliary features x:

1. **Background model.** A conditional normalizing flow ``q(x | m)`` (zuko MAF, m as
   context) is fitted by maximum likelihood to the *sideband* (SB) events, where the
   signal is negligible; early stopping on the negative log-likelihood of a held-out
   20 % of them. Inputs are standardised with the SB mean and std. ``ensemble`` (5 by
   default) such flows with different seeds and held-out splits form an equal-weight
   mixture (:class:`FlowEnsemble`): one flow's fit-to-fit mismodelling of the SR
   background is what the classifier would otherwise learn and what made the excess test
   fire without signal.
2. **Interpolation into the SR.** Masses are drawn from a Gaussian kernel density
   estimate of the SR data's m (Scott bandwidth, draws outside the SR redrawn) and
   x ~ q(x | m): ``oversample`` × (SR events) synthetic background events.
3. **Classifier.** An MLP (BCE, classes balanced by weights) learns SR data (label 1)
   from the synthetic background (label 0), on x only. If q is right, the optimal
   classifier is monotone in ``p_data(x | SR) / p_bkg(x | SR) = 1 + (S/B) p_s/p_b``, the
   optimal signal/background likelihood ratio. **k-fold**: the SR data and the samples
   are split into ``folds`` parts; the classifier of fold k trains on the other parts
   (``ensemble`` members with different seeds, probabilities averaged) and scores fold k,
   so no event is scored by a classifier that saw it. Events outside the training data
   (test sets) get the mean over all folds' classifiers.

Comparisons on the same data with the same classifier and folds (:func:`run_methods`):

* **idealized AD**: SR data vs true background samples from the known density (the
  ceiling for CATHODE; synthetic data only);
* **supervised**: true signal vs true background samples (the ceiling for any x-only
  classifier that must learn from samples);
* **CWoLa hunting** (arXiv 1902.02634): SR data vs the data of the adjacent sidebands
  (x only); x correlated with m makes the sidebands differ from the SR background, which
  the classifier learns instead of the signal;
* **ANODE** (arXiv 2001.04990): the ratio ``q_data(x | m) / q_bkg(x | m)`` of a flow on the
  SR data (2-fold: each half scored by the flow of the other half) and the SB flow.

Metrics (:func:`sic_curve`): the significance improvement characteristic
SIC = ε_S / √ε_B on labelled signal and background test events in the SR; at ε_S = 0.2,
and its maximum over thresholds where at least ``min_background`` background test
events pass (ε_B ≥ min_background / N_B: below that the SIC is noise and diverges as
ε_B → 0).

Everything is deterministic for a seed: each network is built under
:func:`rarefy.nn.seeding.seeded` and trained by :class:`rarefy.nn.trainer.Trainer` with
batches drawn from ``numpy.random.default_rng([seed, ...])``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import numpy as np
import torch
import zuko

from ..errors import InputError
from ..nn.classifier import mlp
from ..nn.early_stopping import EarlyStopping
from ..nn.seeding import seeded
from ..nn.trainer import Trainer

__all__ = ["FlowSettings", "ClassifierSettings", "ConditionalFlow", "FlowEnsemble", "fit_conditional_flow",
           "fit_flow_ensemble", "sample_sr_masses",
           "kfold_classify", "KFoldScores", "sic_curve", "sic_metrics", "null_test", "Cathode", "CathodeResult"]

log = logging.getLogger(__name__)

_BATCH_EVAL = 65536


@dataclass(frozen=True)
class FlowSettings:
    """Conditional flow: ``transforms`` MAF transforms with ``hidden`` widths; Adam(``lr``, ``schedule``:
    ``constant`` or ``cosine`` decay over ``epochs``), ``batch_size``, at most ``epochs`` epochs with early
    stopping (``patience``) on 20 % held-out events (the best epoch's weights are kept). ``ensemble`` flows with
    different seeds (and held-out splits) make one equal-weight mixture (:class:`FlowEnsemble`)."""

    transforms: int = 3
    hidden: tuple[int, ...] = (32, 32)
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    patience: int = 10
    schedule: Literal["constant", "cosine"] = "cosine"
    ensemble: int = 5


@dataclass(frozen=True)
class ClassifierSettings:
    """MLP classifier: ``hidden`` widths (ReLU), BCE with balanced class weights, Adam(``lr``, ``weight_decay``),
    ``epochs`` fixed epochs of ``batch_size``; ``folds`` k-fold parts, ``ensemble`` members per fold."""

    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    folds: int = 5
    ensemble: int = 1


class _Scaler:
    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(0)
        sd = x.std(0)
        self.std = np.where(sd > 0, sd, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, np.float64) * self.std + self.mean


class ConditionalFlow:
    """A zuko MAF density ``q(x | m)`` with its own standardisation of x and m.

    :meth:`log_prob` is in the original units of x (the Jacobian of the standardisation
    is included), so ratios of two flows with different scalers are consistent.
    """

    def __init__(self, x: np.ndarray, m: np.ndarray, settings: FlowSettings, seed: int) -> None:
        self.settings = settings
        self.sx = _Scaler(np.asarray(x, np.float64))
        self.sm = _Scaler(np.asarray(m, np.float64)[:, None])
        with seeded(seed):
            self.flow = zuko.flows.MAF(features=x.shape[1], context=1, transforms=settings.transforms,
                                       hidden_features=tuple(settings.hidden))
        self.history: list[dict[str, Any]] = []

    @torch.no_grad()
    def log_prob(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """log q(x | m) per event (float64, in the units of x)."""
        self.flow.eval()
        z, c = self.sx(x), self.sm(np.asarray(m)[:, None])
        out = [self.flow(torch.from_numpy(c[i:i + _BATCH_EVAL])).log_prob(torch.from_numpy(z[i:i + _BATCH_EVAL]))
               .double().numpy() for i in range(0, len(z), _BATCH_EVAL)]
        lp = np.concatenate(out) if out else np.zeros(0)
        return lp - np.log(self.sx.std).sum()

    @torch.no_grad()
    def sample(self, m: np.ndarray, seed: int) -> np.ndarray:
        """One x ~ q(x | m) per mass (seeded)."""
        self.flow.eval()
        c = self.sm(np.asarray(m)[:, None])
        with seeded(seed):
            out = [self.flow(torch.from_numpy(c[i:i + _BATCH_EVAL])).sample().double().numpy()
                   for i in range(0, len(c), _BATCH_EVAL)]
        return self.sx.inverse(np.concatenate(out))


def fit_conditional_flow(x: np.ndarray, m: np.ndarray, settings: FlowSettings, seed: int,
                         name: str = "flow") -> ConditionalFlow:
    """Fit ``q(x | m)`` by maximum likelihood (:class:`rarefy.nn.trainer.Trainer`), early stopping on 20 % held out."""
    x = np.asarray(x, np.float64)
    m = np.asarray(m, np.float64)
    if len(x) < 10:
        raise InputError(f"{name}: too few events to fit a flow ({len(x)})")
    rng = np.random.default_rng([seed, 1])
    perm = rng.permutation(len(x))
    n_val = max(1, len(x) // 5)
    val, tr = perm[:n_val], perm[n_val:]
    cf = ConditionalFlow(x[tr], m[tr], settings, seed)
    zt, ct = torch.from_numpy(cf.sx(x[tr])), torch.from_numpy(cf.sm(m[tr, None]))
    bs = settings.batch_size
    nb = max(1, math.ceil(len(tr) / bs))

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        p = torch.from_numpy(np.random.default_rng([seed, 2, epoch]).permutation(len(tr)))
        for b in range(nb):
            idx = p[b * bs:(b + 1) * bs]
            yield zt[idx], ct[idx]

    def step(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return -model(batch[1]).log_prob(batch[0]).mean()

    def validate(model: torch.nn.Module) -> float:
        return float(-cf.log_prob(x[val], m[val]).mean())

    trainer: Trainer[tuple[torch.Tensor, torch.Tensor]] = Trainer(
        cf.flow, lambda p: torch.optim.Adam(p, lr=settings.lr), step, epochs=settings.epochs, validate=validate,
        early_stopping=EarlyStopping(settings.patience), lr_schedule=settings.schedule, seed=seed, name=name)
    cf.history = trainer.fit(batches).history
    log.info("%s: %d epochs on %d events, best val NLL %.4f", name, len(cf.history), len(tr),
             trainer.state.best_val_loss)
    return cf


def _member_seed(seed: int, j: int) -> int:
    return seed if j == 0 else seed + 7919 * j


class FlowEnsemble:
    """Equal-weight mixture ``q(x | m) = (1/K) Σ_j q_j(x | m)`` of K conditional flows.

    Each member fits the same sideband events with its own seed (initial weights, batch
    order and 20 % held-out split), so the members' errors are partly independent and
    averaging the densities reduces the part of the mismodelling that varies from fit to
    fit (the variance), not a bias common to all. :meth:`sample` draws from the mixture:
    the j-th of every K masses is given to member j. With K = 1 this is the single flow.
    """

    def __init__(self, flows: list[ConditionalFlow]) -> None:
        if not flows:
            raise ValueError("a flow ensemble needs at least one flow")
        self.flows = list(flows)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The training history of the first member."""
        return self.flows[0].history

    def log_prob(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """log q(x | m) of the mixture per event (float64, in the units of x)."""
        lp = np.stack([f.log_prob(x, m) for f in self.flows])
        top = lp.max(0)
        return top + np.log(np.exp(lp - top).mean(0))

    def sample(self, m: np.ndarray, seed: int) -> np.ndarray:
        """One x ~ q(x | m) per mass (seeded); member j draws for the masses j, j + K, j + 2K, ..."""
        m = np.asarray(m, np.float64)
        k = len(self.flows)
        out = np.zeros((len(m), self.flows[0].sx.mean.shape[0]))
        for j, f in enumerate(self.flows):
            if len(m[j::k]):
                out[j::k] = f.sample(m[j::k], seed + j)
        return out


def fit_flow_ensemble(x: np.ndarray, m: np.ndarray, settings: FlowSettings, seed: int,
                      name: str = "flow") -> FlowEnsemble:
    """``settings.ensemble`` flows (:func:`fit_conditional_flow`, member 0 with ``seed``) as a :class:`FlowEnsemble`."""
    if settings.ensemble < 1:
        raise InputError(f"flow ensemble must be >= 1, got {settings.ensemble}")
    return FlowEnsemble([fit_conditional_flow(x, m, settings, _member_seed(seed, j), name=f"{name} {j}")
                         for j in range(settings.ensemble)])


def sample_sr_masses(m_sr: np.ndarray, n: int, window: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """n masses from a Gaussian KDE (Scott bandwidth) of the SR masses ``m_sr``, redrawn until inside ``window``."""
    m_sr = np.asarray(m_sr, np.float64)
    h = 1.06 * m_sr.std() * len(m_sr) ** (-1 / 5)
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        k = n - have
        draw = m_sr[rng.integers(0, len(m_sr), 2 * k)] + h * rng.standard_normal(2 * k)
        draw = draw[(draw >= window[0]) & (draw < window[1])]
        out.append(draw[:k])
        have += len(out[-1])
    return np.concatenate(out)


def _train_classifier(x1: np.ndarray, x0: np.ndarray, s: ClassifierSettings, seed: int,
                      name: str) -> torch.nn.Module:
    x = torch.from_numpy(np.concatenate([x1, x0]).astype(np.float32))
    y = torch.from_numpy(np.concatenate([np.ones(len(x1)), np.zeros(len(x0))]).astype(np.float32))
    w1, w0 = len(x) / (2 * len(x1)), len(x) / (2 * len(x0))
    wt = torch.where(y > 0, torch.tensor(w1, dtype=torch.float32), torch.tensor(w0, dtype=torch.float32))
    with seeded(seed):
        model = mlp(x.shape[1], tuple(s.hidden))
    nb = max(1, math.ceil(len(x) / s.batch_size))

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        p = torch.from_numpy(np.random.default_rng([seed, 3, epoch]).permutation(len(x)))
        for b in range(nb):
            yield p[b * s.batch_size:(b + 1) * s.batch_size]

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        logits = model(x[idx])[:, 0]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], weight=wt[idx])

    Trainer(model, lambda p: torch.optim.Adam(p, lr=s.lr, weight_decay=s.weight_decay), step, epochs=s.epochs,
            seed=seed, name=name).fit(batches)
    model.eval()
    return model


@torch.no_grad()
def _predict(models: list[torch.nn.Module], x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(np.asarray(x, np.float32))
    out = np.zeros(len(x))
    for mdl in models:
        out += np.concatenate([torch.sigmoid(mdl(xt[i:i + _BATCH_EVAL])[:, 0]).double().numpy()
                               for i in range(0, len(xt), _BATCH_EVAL)]) if len(xt) else 0.0
    return out / max(1, len(models))


@dataclass
class KFoldScores:
    """Out-of-fold scores of the label-1 events (``scores1``) and label-0 events (``scores0``), the fold of each
    event, and the ensemble-mean scores of each extra array (``extra``)."""

    scores1: np.ndarray
    scores0: np.ndarray
    fold1: np.ndarray
    fold0: np.ndarray
    extra: list[np.ndarray] = field(default_factory=list)


def kfold_classify(x1: np.ndarray, x0: np.ndarray, settings: ClassifierSettings, seed: int,
                   extra: tuple[np.ndarray, ...] = (), name: str = "classifier") -> KFoldScores:
    """k-fold classifier of ``x1`` (label 1) against ``x0`` (label 0); see the module docstring.

    Features are standardised with the mean and std of ``x1``. Returns out-of-fold
    probabilities for every event of ``x1`` and ``x0`` and, for each array in ``extra``,
    the mean over all fold classifiers.
    """
    k = settings.folds
    if k < 2:
        raise InputError(f"folds must be >= 2, got {k}")
    if min(len(x1), len(x0)) < k:
        raise InputError(f"{name}: need at least {k} events per class for {k} folds, got {len(x1)} and {len(x0)}")
    sc = _Scaler(np.asarray(x1, np.float64))
    z1, z0 = sc(x1), sc(x0)
    rng = np.random.default_rng([seed, 4])
    f1 = rng.permutation(np.arange(len(z1)) % k)
    f0 = rng.permutation(np.arange(len(z0)) % k)
    s1, s0 = np.zeros(len(z1)), np.zeros(len(z0))
    ez = [sc(e) for e in extra]
    es = [np.zeros(len(e)) for e in extra]
    for j in range(k):
        models = [_train_classifier(z1[f1 != j], z0[f0 != j], settings, seed * 1009 + j * 31 + e,
                                    f"{name} fold {j}") for e in range(settings.ensemble)]
        s1[f1 == j] = _predict(models, z1[f1 == j])
        s0[f0 == j] = _predict(models, z0[f0 == j])
        for i, e in enumerate(ez):
            es[i] += _predict(models, e) / k
    return KFoldScores(s1, s0, f1, f0, es)


def sic_curve(score_sig: np.ndarray, score_bkg: np.ndarray, min_background: int = 50
              ) -> tuple[np.ndarray, np.ndarray]:
    """(ε_S, SIC = ε_S/√ε_B) at every threshold (each signal and background score; an event passes at
    score ≥ threshold) where at least ``min_background`` background events pass; sorted by ε_S."""
    ss = np.sort(np.asarray(score_sig, np.float64))
    sb = np.sort(np.asarray(score_bkg, np.float64))
    t = np.unique(np.concatenate([ss, sb]))
    pass_s = len(ss) - np.searchsorted(ss, t, side="left")
    pass_b = len(sb) - np.searchsorted(sb, t, side="left")
    ok = (pass_b >= min_background) & (pass_s > 0)
    eps_s, eps_b = pass_s[ok] / len(ss), pass_b[ok] / len(sb)
    order = np.argsort(eps_s, kind="stable")
    return eps_s[order], (eps_s / np.sqrt(eps_b))[order]


def sic_metrics(score_sig: np.ndarray, score_bkg: np.ndarray, min_background: int = 50) -> dict[str, float]:
    """SIC at ε_S = 0.2 (``sic_at_0.2``), max SIC (``max_sic``) with ε_B ≥ min_background/N_B, and ROC AUC."""
    es, sic = sic_curve(score_sig, score_bkg, min_background)
    at = float(np.interp(0.2, es, sic)) if len(es) and es[0] <= 0.2 else float("nan")
    sb = np.sort(score_bkg)
    auc = float(np.searchsorted(sb, score_sig, side="left").mean() / len(sb))
    return {"sic_at_0.2": at, "max_sic": float(sic.max()) if len(sic) else float("nan"), "auc": auc}


def null_test(scores_data: np.ndarray, fold_data: np.ndarray, scores_ref: np.ndarray, fold_ref: np.ndarray,
              quantile: float = 0.99) -> dict[str, float]:
    """Excess of SR data over the background model above the ``quantile`` of the model's scores.

    Per fold, the threshold is the ``quantile`` of that fold's held-out reference (flow)
    scores; the data events of the fold above it are counted. Without signal and with a
    right background model the count is Binomial(N, 1 − quantile); ``p_value`` is the
    one-sided probability of at least the observed count.
    """
    from scipy.stats import binom

    n_above, n = 0, 0
    for j in np.unique(fold_data):
        t = np.quantile(scores_ref[fold_ref == j], quantile)
        d = scores_data[fold_data == j]
        n_above += int((d > t).sum())
        n += len(d)
    p = 1 - quantile
    return {"events": n, "above": n_above, "expected": n * p, "fraction": n_above / max(n, 1),
            "p_value": float(binom.sf(n_above - 1, n, p))}


@dataclass
class CathodeResult:
    """Out-of-fold scores of the SR data events (``scores``, with their ``fold``), the flow samples' scores, the
    fitted SB flow and the wall times per stage (s)."""

    scores: np.ndarray
    fold: np.ndarray
    sample_scores: np.ndarray
    sample_fold: np.ndarray
    flow: FlowEnsemble
    extra: list[np.ndarray]
    timings: dict[str, float]


class Cathode:
    """CATHODE on events (m, x) with signal region ``sr``; see the module docstring.

    Parameters
    ----------
    sr:
        Signal-region window (lo, hi) in the units of m.
    flow, classifier:
        Settings of the SB flow and the classifier.
    oversample:
        Synthetic SR background events per SR data event.
    seed:
        Seeds flows, samples, folds and classifiers.
    """

    def __init__(self, sr: tuple[float, float], *, flow: FlowSettings = FlowSettings(),
                 classifier: ClassifierSettings = ClassifierSettings(), oversample: int = 4, seed: int = 0) -> None:
        self.sr = (float(sr[0]), float(sr[1]))
        self.flow_settings = flow
        self.classifier = classifier
        self.oversample = int(oversample)
        self.seed = int(seed)

    def fit_background(self, m: np.ndarray, x: np.ndarray) -> FlowEnsemble:
        """Fit the SB flow(s) on the events outside the SR."""
        sb = ~((m >= self.sr[0]) & (m < self.sr[1]))
        return fit_flow_ensemble(x[sb], m[sb], self.flow_settings, self.seed, name="SB flow")

    def sample_background(self, flow: ConditionalFlow | FlowEnsemble, m_sr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``oversample`` × len(m_sr) synthetic SR background events (m, x)."""
        rng = np.random.default_rng([self.seed, 5])
        ms = sample_sr_masses(m_sr, self.oversample * len(m_sr), self.sr, rng)
        return ms, flow.sample(ms, self.seed + 7)

    def run(self, m: np.ndarray, x: np.ndarray, extra: tuple[np.ndarray, ...] = ()) -> CathodeResult:
        """Fit, sample, classify: out-of-fold scores for the SR events of (m, x), ensemble scores of ``extra`` x."""
        m = np.asarray(m, np.float64)
        x = np.asarray(x, np.float64)
        t0 = time.perf_counter()
        flow = self.fit_background(m, x)
        t1 = time.perf_counter()
        sr = (m >= self.sr[0]) & (m < self.sr[1])
        _, xs = self.sample_background(flow, m[sr])
        t2 = time.perf_counter()
        k = kfold_classify(x[sr], xs, self.classifier, self.seed, extra, name="CATHODE classifier")
        t3 = time.perf_counter()
        return CathodeResult(k.scores1, k.fold1, k.scores0, k.fold0, flow, k.extra,
                             {"flow_s": t1 - t0, "sample_s": t2 - t1, "classifier_s": t3 - t2})
