"""Saved models load with ``torch.load(weights_only=True)``: a model file crafted to run code
when unpickled is refused and runs nothing."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch

from rarefy.errors import InputError
from rarefy.nn.checkpoint import load_checkpoint
from rarefy.surrogate import AR1Settings, AR1Surrogate
from rarefy.surrogate.factory import load_surrogate

from conftest import two_fidelity_table


class Payload:
    """Unpickling this object touches ``marker``: what a hostile model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def plant(path: Path, marker: Path) -> None:
    torch.save({"state": Payload(marker)}, path)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    plant(tmp_path / "ckpt.pt", marker)
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "ckpt.pt")
    assert not marker.exists()


def test_a_crafted_surrogate_file_is_refused_and_runs_nothing(space2d, tmp_path):
    table = two_fidelity_table(space2d, n_lf=8, n_hf=3)
    AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1, max_iter=20)).fit(table).save(tmp_path / "s")
    marker = tmp_path / "ran"
    plant(tmp_path / "s" / "model.pt", marker)
    with pytest.raises(Exception):
        load_surrogate(tmp_path / "s")
    assert not marker.exists()


def test_a_crafted_denoiser_file_is_refused_and_runs_nothing(tmp_path):
    from rarefy.denoise.train import load_model

    marker = tmp_path / "ran"
    plant(tmp_path / "model.pt", marker)
    with pytest.raises(Exception):
        load_model(tmp_path / "model.pt")
    assert not marker.exists()
