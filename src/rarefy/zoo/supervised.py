"""A generic supervised backend around a user's :class:`torch.nn.Module` (the ``custom`` backend).

The user's module maps normalised features ``(B, d)`` (θ scaled to [-1, 1] by the
training range, φ standardised; see :class:`rarefy.zoo.torch_backend.TorchBackend`) to
one signal logit per event, ``(B,)`` or ``(B, 1)``. It is built as
``Class(in_features=d, **module)`` — or ``Class(d, **module)`` when the constructor has
no ``in_features`` argument — wrapped in :class:`rarefy.zoo.training.Calibrated` and
trained by the zoo's shared trainer (:func:`rarefy.zoo.training.train_model`) with a
:class:`rarefy.zoo.training.ClassifierObjective`: the stage-1 losses, imbalance
schedules, ``pos_weight``, mixup, early stopping, checkpoints and TensorBoard, and the
prior-shift calibration, so :meth:`score` returns calibrated probabilities.

Options: every :class:`rarefy.zoo.training.TrainOptions` field, plus ``module_path``
(``"package.module:Class"``, set by the registry from the config's ``import_path``)
and ``module`` (constructor keyword arguments of the user's class).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from pydantic import Field

from ..errors import InputError
from .torch_backend import TorchBackend, TorchBackendOptions
from .training import Calibrated, ClassifierObjective, Objective

__all__ = ["TorchModuleBackend", "TorchModuleOptions"]


class TorchModuleOptions(TorchBackendOptions):
    """:class:`TorchBackendOptions` plus the user's module: import path and constructor options."""

    module_path: str
    module: dict[str, Any] = Field(default_factory=dict)


class TorchModuleBackend(TorchBackend):
    """Supervised backend around a user's torch module class named by import path; see the module docstring."""

    name = "custom"
    probabilistic = True
    Options = TorchModuleOptions

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed, **options)
        from .registry import import_object

        self.module_cls = import_object(self.options.module_path)
        if not (inspect.isclass(self.module_cls) and issubclass(self.module_cls, torch.nn.Module)):
            raise InputError(f"custom module {self.options.module_path!r} is not a torch.nn.Module subclass")

    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        kw = dict(self.options.module)
        try:
            params = inspect.signature(self.module_cls).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        try:
            net = self.module_cls(in_features=d, **kw) if "in_features" in params else self.module_cls(d, **kw)
        except TypeError as exc:
            raise InputError(f"cannot build custom module {self.options.module_path!r} with in_features={d} and "
                             f"options {kw}: {exc}") from None
        return Calibrated(net)

    def objective(self) -> Objective:
        return ClassifierObjective(self.options.loss, self.options.pos_weight)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated signal probability."""
        assert self.model is not None
        z = self.model.calibrated(x)
        if z.ndim != 1 or z.shape[0] != x.shape[0]:
            raise InputError(f"custom module must return one logit per event, got shape {tuple(z.shape)}")
        return torch.sigmoid(z)
