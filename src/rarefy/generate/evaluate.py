"""How close generated events are to simulated ones: classifier two-sample test, 1-D Wasserstein, χ².

**Classifier two-sample test (C2ST).** A classifier is trained to tell simulated (label
0) from generated (label 1) events of one design; its ROC-AUC on held-out events is 0.5
when the two samples come from the same distribution and grows towards 1 with every
difference it can find, joint ones included (Lopez-Paz & Oquab 2017). The classifier is
a small torch MLP (features standardised with the simulated events' mean and std,
binary cross-entropy, Adam) trained with rarefy's one trainer; the AUC is the
Mann–Whitney statistic on a held-out half, and its error the standard deviation over
``bootstrap`` resamples of that half (the classifier fixed).

**Per-feature distances.** The 1-D Wasserstein-1 distance W₁ (in the feature's unit; also
divided by the simulated standard deviation, so features compare) and a two-sample χ²
over ``bins`` equiprobable bins of the simulated events (the distinct values of a
feature with at most ``bins`` of them),

    χ² = Σ_b (√(M/N) R_b − √(N/M) S_b)² / (R_b + S_b),   ndf = (bins used) − 1,

with R_b, S_b the simulated and generated counts and N, M their totals.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy import stats

from ..nn.seeding import seeded
from ..nn.trainer import Trainer

__all__ = ["c2st", "roc_auc", "wasserstein", "chi2_two_sample", "compare"]


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC-AUC of ``score`` for the positive ``label`` (1): the Mann–Whitney U / (n₀ n₁), ties counted half."""
    label = np.asarray(label).astype(bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n0 == 0 or n1 == 0:
        return math.nan
    ranks = stats.rankdata(score)
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def c2st(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, hidden: Sequence[int] = (64, 64), epochs: int = 20,
         batch_size: int = 512, lr: float = 1e-3, bootstrap: int = 200) -> dict[str, float]:
    """Classifier two-sample test of ``real`` (n, p) against ``fake`` (m, p); see the module docstring.

    Uses min(n, m) events of each (balanced), half of them to train and half to test.
    Returns ``auc``, ``auc_err`` (bootstrap std) and the test size ``n_test``.
    """
    rng = np.random.default_rng([seed, 11])
    k = min(len(real), len(fake))
    if k < 4:
        raise ValueError(f"c2st needs at least 4 events of each sample, got {len(real)} and {len(fake)}")
    a = np.asarray(real, float)[rng.permutation(len(real))[:k]]
    b = np.asarray(fake, float)[rng.permutation(len(fake))[:k]]
    mean, std = a.mean(axis=0), a.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x = ((np.concatenate([a, b]) - mean) / std).astype(np.float32)
    y = np.concatenate([np.zeros(k), np.ones(k)]).astype(np.float32)
    perm = rng.permutation(2 * k)
    tr, te = perm[: k], perm[k:]
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    layers: list[torch.nn.Module] = []
    width = x.shape[1]
    with seeded(seed):
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        net = torch.nn.Sequential(*layers)
    nb = max(1, math.ceil(len(tr) / batch_size))

    def batches(epoch: int) -> Any:
        p = torch.from_numpy(np.random.default_rng([seed, 12, epoch]).permutation(len(tr)))
        return [(xt[p[i * batch_size:(i + 1) * batch_size]], yt[p[i * batch_size:(i + 1) * batch_size]])
                for i in range(nb)]

    def step(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(model(batch[0])[:, 0], batch[1])

    Trainer(net, lambda p: torch.optim.Adam(p, lr=lr), step, epochs=epochs, seed=seed, name="c2st").fit(batches)
    with torch.no_grad():
        score = net(torch.from_numpy(x[te]))[:, 0].double().numpy()
    label = y[te]
    auc = roc_auc(score, label)
    brng = np.random.default_rng([seed, 13])
    boots = [roc_auc(score[i], label[i]) for i in (brng.integers(0, len(te), len(te)) for _ in range(bootstrap))]
    return {"auc": auc, "auc_err": float(np.nanstd(boots)) if bootstrap else math.nan, "n_test": int(len(te))}


def wasserstein(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """1-D Wasserstein-1 distance of two samples, in their unit and divided by ``real``'s standard deviation."""
    w = float(stats.wasserstein_distance(real, fake))
    s = float(np.std(real))
    return w, w / s if s > 0 else math.nan


def chi2_two_sample(real: np.ndarray, fake: np.ndarray, bins: int = 20) -> dict[str, float]:
    """Two-sample χ², its degrees of freedom and p-value over equiprobable bins of ``real`` (see the module docstring)."""
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    values = np.unique(real)
    if len(values) <= bins:  # discrete: one bin per value (the others of fake fall outside)
        edges = np.concatenate([values - 0.5 * np.diff(values, prepend=values[0] - 1),
                                [values[-1] + 0.5 * (np.diff(values)[-1] if len(values) > 1 else 1)]])
    else:
        edges = np.unique(np.quantile(real, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
    r, _ = np.histogram(real, edges)
    s, _ = np.histogram(fake, edges)
    n, m = r.sum(), s.sum()
    used = (r + s) > 0
    chi2 = float(np.sum((math.sqrt(m / n) * r[used] - math.sqrt(n / m) * s[used]) ** 2 / (r[used] + s[used])))
    ndf = int(used.sum()) - 1
    return {"chi2": chi2, "ndf": ndf, "p": float(stats.chi2.sf(chi2, ndf)) if ndf > 0 else math.nan}


def compare(real: np.ndarray, fake: np.ndarray, names: Sequence[str], *, seed: int = 0, bins: int = 20,
            **c2st_options: Any) -> dict[str, Any]:
    """All of the above for one design: ``c2st`` (auc, auc_err, n_test) and per-feature ``features``
    (``w1``, ``w1_over_std``, ``chi2``, ``ndf``, ``p``)."""
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    out: dict[str, Any] = {"c2st": c2st(real, fake, seed=seed, **c2st_options), "features": {}}
    for j, name in enumerate(names):
        w, wn = wasserstein(real[:, j], fake[:, j])
        out["features"][name] = {"w1": w, "w1_over_std": wn, **chi2_two_sample(real[:, j], fake[:, j], bins)}
    return out
