"""Event-level denoising: per-event signal probabilities averaged into per-run rates.

The models (:func:`build_model`, config ``denoise.model.kind``): ``cnp`` and ``attentive`` are
conditional neural processes (they read a labelled context set of the event's run);
``factorised`` (:class:`FactorisedClassifier`, the one ``examples/moderator/denoise.yaml``
uses) is a factorised per-event classifier that reads no context.

Python API (the CLI's ``rarefy train`` / ``rarefy denoise`` will call these)::

    from rarefy import denoise
    data = denoise.EventData.from_arrays(theta, phi, y, run_id)      # or a chunk source
    result = denoise.train(data, {"epochs": 10}, out="runs/x/denoise", space=space)
    scores = denoise.score(result, data)                              # per-event p̄ ± σ_p
    table = denoise.aggregate(scores, space, fidelity="lf")           # RateTable rows "lf-denoised"
"""

from __future__ import annotations

from .aggregate import aggregate, aggregate_frame
from .context import ContextBank, draw_bank, fold_banks
from .data import (ChunkSource, EventData, from_event_store, from_event_table, iter_chunks, parquet_shards,
                   split_runs)
from ..nn.losses import LOSSES, get_loss, loss_names, predictive
from ..nn.mixup import Mixup
from .models import CNP, RESUM_WIDTHS, AttentiveCNP, FactorisedClassifier, FactorisedCNP, build_model
from .normalize import Normalizer
from ..nn.sampling import Phase, Schedule
from .score import Scores, average_scores, score
from .train import TrainResult, denoise_config, load_model, save_model, train

__all__ = [
    "AttentiveCNP", "CNP", "ChunkSource", "ContextBank", "EventData", "FactorisedClassifier", "LOSSES", "Mixup", "Normalizer", "Phase",
    "RESUM_WIDTHS", "Schedule", "Scores", "TrainResult", "aggregate", "aggregate_frame", "average_scores", "build_model",
    "denoise_config", "draw_bank", "fold_banks", "from_event_store", "from_event_table", "get_loss",
    "iter_chunks", "load_model", "loss_names", "parquet_shards", "predictive", "save_model", "score",
    "split_runs", "train",
]
