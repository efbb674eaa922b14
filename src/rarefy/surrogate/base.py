"""What every rarefy surrogate provides, and how it is a BoTorch ``Model``.

A rarefy surrogate is a multi-fidelity model of a rate over a :class:`DesignSpace`:

* ``space``, ``fidelities`` (lowest first; the last is the **target**), ``settings``, ``seed``, ``info``;
* ``fit(table)`` on a :class:`rarefy.RateTable` (per-run known noise), returning itself;
* ``predict(x, fidelity)``: marginal mean and std in the rate's units;
* ``joint(x, fidelity)``: the joint latent posterior (mean (..., n), covariance (..., n, n));
* ``noise_variance(fidelity)``: the learned nugget (rate units²);
* ``save(directory)`` / ``load(directory)``: ``model.pt`` (tensors) + ``model.json`` (settings).

:class:`Surrogate` implements the parts they share and makes each one a
``botorch.models.model.Model`` with one output: :meth:`Surrogate.posterior` takes designs
in the space's own units (columns in ``space.names`` order, shape ``... × q × d``) and
returns the joint ``GPyTorchPosterior`` of the q points at the target fidelity (or another
one, by keyword), in the rate's units (:class:`RateNormal`: GPyTorch's floor of 1e-10 on
variances would swamp the variance of a rate of 1e-5). So any BoTorch acquisition function, ``optimize_acqf`` and
``ModelList`` work on a rarefy surrogate unchanged, with bounds in parameter units.

The covariance is reported as computed (its diagonal equals ``predict``'s variance);
drawing samples needs its Cholesky factor, which is taken with a relative jitter of
1e-9 of the mean variance (:class:`JointCovariance`): the posterior of nearby or
replicated designs is singular to rounding, and linear_operator's default jitter is
absolute (1e-8), far too large for rates of order 1e-4.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DenseLinearOperator, TriangularLinearOperator

from ..errors import InputError
from ..io import atomic_path, read_json
from ..nn.checkpoint import load_checkpoint
from ..space import DesignSpace
from ..threads import torch_threads
from .linalg import safe_cholesky

__all__ = ["Surrogate", "JointModel", "FixedFidelity", "JointCovariance", "RateNormal", "joint_posterior", "standardise",
           "DTYPE"]

DTYPE = torch.float64
ROOT_JITTER = 1e-9  # relative jitter of the Cholesky factor used for sampling (not of the reported covariance)


class JointCovariance(DenseLinearOperator):
    """A dense posterior covariance whose Cholesky factor (for sampling) carries a tiny relative jitter.

    ``diagonal()``/``to_dense()`` return the covariance as computed; only the factor used by
    ``rsample`` is that of ``C + 1e-9 · mean(diag C) · I``.
    """

    def _cholesky(self, upper: bool | None = False) -> TriangularLinearOperator:
        c = self.tensor
        scale = c.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
        eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
        L = safe_cholesky(c + ROOT_JITTER * scale[..., None, None] * eye, quiet=True)
        return TriangularLinearOperator(L.mT if upper else L, upper=bool(upper))


class RateNormal(MultivariateNormal):
    """A ``MultivariateNormal`` whose ``variance`` is the covariance's diagonal as computed (clamped at 0).

    GPyTorch clamps variances to at least 1e-10 (float64): fine for standardised outputs,
    wrong for a rate of 1e-5 known to ±1e-6, whose variance is 1e-12.
    """

    @property
    def variance(self) -> torch.Tensor:
        diag = self.lazy_covariance_matrix.diagonal(dim1=-1, dim2=-2)
        diag = diag.view(diag.shape[:-1] + self._event_shape)
        return diag.expand(self._batch_shape + self._event_shape).clamp_min(0.0)


def standardise(y: np.ndarray, fid: np.ndarray, levels: int, v: np.ndarray | None = None,
                log_scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-fidelity location and scale of the outputs ``y`` (fidelity index ``fid``), free of their units.

    The location is the mean and the scale the standard deviation (ddof 1) of the
    fidelity's values. Multiplying ``y`` (and ``v`` by the square) by any factor
    multiplies the scales by it too: a rate of 1e-12 is standardised exactly as one of
    1; no absolute floor is applied. A fidelity whose values do not spread (one row, or
    equal values to rounding: a spread below ``1e-12 · |mean|``) takes, in order:

    * ``|mean|`` (not with ``log_scale``, where the mean of a logarithm depends on the
      unit of the rate),
    * the root mean of its known noise variances ``v`` (output units²),
    * for ``log_scale`` outputs (logarithms of rates), 1: a factor of e, free of the unit,
    * otherwise (all values and noise exactly 0) the geometric mean of the other
      fidelities' scales, or 1 when no fidelity has any scale.
    """
    means, stds = np.zeros(levels), np.full(levels, np.nan)
    for i in range(levels):
        sel = fid == i
        yi = y[sel]
        means[i] = yi.mean()
        sd = float(yi.std(ddof=1)) if len(yi) > 1 else 0.0
        noise = float(np.sqrt(np.mean(v[sel]))) if v is not None and len(yi) else 0.0
        if sd > 1e-12 * abs(means[i]):
            stds[i] = sd
        elif not log_scale and abs(means[i]) > 0:
            stds[i] = abs(means[i])
        elif noise > 0:
            stds[i] = noise
        elif log_scale:
            stds[i] = 1.0
    unknown = np.isnan(stds)
    if unknown.any():
        known = stds[~unknown]
        stds[unknown] = float(np.exp(np.mean(np.log(known)))) if known.size else 1.0
    return means, stds


def joint_posterior(joint: Callable[[torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]], X: torch.Tensor,
                    fidelity: Any = None, noise: float | torch.Tensor | bool = False,
                    posterior_transform: Any = None) -> GPyTorchPosterior:
    """A ``GPyTorchPosterior`` at ``X`` (``... × q × d``) from a ``joint(x, fidelity) -> (mean, cov)`` function.

    With q = 1 all batches go through ``joint`` as one flat (n, d) call and keep each
    point's own variance. ``noise``: a variance added to the diagonal (a number, or a
    tensor ``... × q × 1``); False for none.
    """
    X = X.to(DTYPE)
    if X.shape[-2] == 1:
        mean, cov = joint(X.reshape(-1, X.shape[-1]), fidelity)
        mean = mean.reshape(X.shape[:-1])
        cov = cov.diagonal(dim1=-2, dim2=-1).reshape(X.shape[:-1]).unsqueeze(-1)
    else:
        mean, cov = joint(X, fidelity)
    if isinstance(noise, torch.Tensor):
        cov = cov + torch.diag_embed(noise.to(cov).squeeze(-1).expand(mean.shape))
    elif noise is not False and noise is not None:
        cov = cov + float(noise) * torch.eye(cov.shape[-1], dtype=DTYPE)
    post = GPyTorchPosterior(RateNormal(mean, JointCovariance(cov)))
    return posterior_transform(post) if posterior_transform is not None else post


class JointModel(Model):
    """A one-output BoTorch model defined by a joint posterior ``joint(x, fidelity) -> (mean, cov)``.

    Subclasses implement ``joint`` and ``noise_variance``; :meth:`posterior` follows.
    """

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def joint(self, x: Any, fidelity: Any = None) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def noise_variance(self, fidelity: str | None = None) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def posterior(self, X: torch.Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool | torch.Tensor = False, posterior_transform: Any = None, *,
                  fidelity: str | None = None) -> Any:
        """Joint posterior of ``fidelity`` (default: the target) at designs ``X`` (``... × q × d``, parameter units).

        Returns a ``GPyTorchPosterior`` over a :class:`RateNormal` (mean ``... × q``,
        covariance ``... × q × q``), in the rate's units; differentiable in ``X`` where
        ``joint`` is. ``observation_noise=True`` adds the fidelity's learned nugget to
        the diagonal, a tensor (``... × q × 1``) adds those noise variances.
        """
        if output_indices is not None and list(output_indices) != [0]:
            raise ValueError(f"a rarefy surrogate has one output; output_indices={output_indices}")
        noise = observation_noise
        if not isinstance(noise, torch.Tensor) and noise:
            noise = self.noise_variance(fidelity)
        return joint_posterior(self.joint, X, fidelity, noise, posterior_transform)


class Surrogate(JointModel):
    """Base of rarefy's surrogates: the shared protocol, save/load plumbing, and the BoTorch ``Model`` interface.

    Subclasses set ``kind`` and ``settings_class`` and implement ``fit``, ``predict``,
    ``joint``, ``noise_variance``, ``hyperparameters``, ``_state_tensors`` and
    ``_restore``.
    """

    kind: ClassVar[str] = ""
    settings_class: ClassVar[type] = object
    #: whether ``joint`` takes a tensor of fidelity indices, mixing fidelities in one posterior
    #: (what the multi-fidelity acquisitions need)
    mixed_fidelity: ClassVar[bool] = False

    def __init__(self, space: DesignSpace, fidelities: Sequence[str], settings: Any = None, seed: int = 0) -> None:
        super().__init__()
        if not fidelities:
            raise ValueError("at least one fidelity is needed")
        self.space = space
        self.fidelities = list(fidelities)
        self.settings = settings if settings is not None else self.settings_class()
        self.seed = seed

    # ------------------------------------------------------------- protocol
    def fit(self, table: Any) -> "Surrogate":  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, x: Any, fidelity: str | None = None, *, observed: bool = False,
                noise_var: Any = None) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_numpy(self, x: Any, fidelity: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict`'s latent mean and σ [rate units] as float arrays, without gradients, on one thread
        (small GP algebra runs much faster single-threaded on a busy machine)."""
        with torch_threads(1), torch.no_grad():
            m, s = self.predict(np.asarray(x, float), fidelity)
        return np.asarray(m, float), np.asarray(s, float)

    def hyperparameters(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def target(self) -> str:
        """The target fidelity (the highest)."""
        return self.fidelities[-1]

    def _fid_index(self, fidelity: str | None) -> int:
        name = self.fidelities[-1] if fidelity is None else fidelity
        if name not in self.fidelities:
            raise ValueError(f"unknown fidelity {name!r}; this surrogate knows {self.fidelities}")
        return self.fidelities.index(name)

    def _rows(self, table: Any) -> tuple[Any, np.ndarray, dict[str, int]]:
        """The table's rows of this surrogate's fidelities, their fidelity indices and the rows per fidelity.

        Raises ValueError when a fidelity has no rows.
        """
        frame = table.frame[table.frame["fidelity"].isin(self.fidelities)]
        fid = frame["fidelity"].map({n: i for i, n in enumerate(self.fidelities)}).to_numpy(dtype=np.int64, copy=True)
        counts = {n: int((fid == i).sum()) for i, n in enumerate(self.fidelities)}
        empty = [n for n, c in counts.items() if c == 0]
        if empty:
            raise InputError(f"the rate table has no rows for fidelities {empty}")
        return frame, fid, counts

    # ----------------------------------------------------------------- botorch
    def at_fidelity(self, fidelity: str | None) -> Model:
        """This surrogate as a one-output BoTorch model of ``fidelity`` (itself for the target)."""
        if fidelity is None or fidelity == self.target:
            return self
        self._fid_index(fidelity)
        return FixedFidelity(self, fidelity)

    # ---------------------------------------------------------------- save/load
    def _state_tensors(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fitted(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.pt`` (tensors; ``torch.save``) and ``model.json`` (settings, fit info) to a folder."""
        if not self._fitted():
            raise RuntimeError("nothing to save: fit() first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = self._state_tensors()
        with atomic_path(directory / "model.pt") as tmp:
            torch.save(tensors, tmp)
        meta = {"kind": self.kind, "fidelities": self.fidelities, "settings": asdict(self.settings),
                "seed": self.seed, "space": self.space.to_dict(), "fit": asdict(self.info),
                "hyperparameters": self.hyperparameters()}
        with atomic_path(directory / "model.json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Any:
        """Load a surrogate written by :meth:`save`."""
        directory = Path(directory)
        meta = read_json(directory / "model.json")
        tensors = load_checkpoint(directory / "model.pt")
        try:
            sur = cls(DesignSpace.from_dict(meta["space"]), meta["fidelities"], cls.settings_class(**meta["settings"]),
                      meta["seed"])
            sur._restore(tensors)
            sur.info = type(sur.info)(**meta["fit"])
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:  # a foreign or edited save
            raise InputError(f"not a saved {cls.__name__} (model.json and model.pt do not match: "
                             f"{type(exc).__name__}: {exc})", file=directory) from None
        return sur


class FixedFidelity(JointModel):
    """A surrogate's posterior at one fixed fidelity, as a one-output BoTorch model (for a ``ModelList``)."""

    def __init__(self, surrogate: Surrogate, fidelity: str) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.fidelity = fidelity

    def joint(self, x: Any, fidelity: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.surrogate.joint(x, self.fidelity if fidelity is None else fidelity)

    def noise_variance(self, fidelity: str | None = None) -> float:
        return self.surrogate.noise_variance(self.fidelity if fidelity is None else fidelity)
