"""A real ``kill -9`` of a training process, then resume: same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from denoise_synth import config, synth

from rarefy.denoise import train
from rarefy.nn.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CFG = config(epochs=4, early_stopping={"patience": 10})


def test_kill_minus_nine_then_resume(tmp_path: Path) -> None:
    marker = tmp_path / "epoch1.done"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT / 'src')!r}, {str(ROOT / 'tests')!r}]
        from denoise_synth import synth
        from rarefy.denoise import train
        def on_epoch(row):
            if row["epoch"] == 1:
                open({str(marker)!r}, "w").close()
                time.sleep(120)  # wait here to be killed
        train(synth(), {CFG!r}, out={str(tmp_path / 'out')!r}, seed=7, on_epoch=on_epoch)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "training process died"
            assert time.monotonic() < deadline, "training process too slow"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "out" / "checkpoint.pt")["epoch"] == 2
    resumed = train(synth(), CFG, out=tmp_path / "out", seed=7)
    full = train(synth(), CFG, seed=7)
    assert resumed.epochs_run == 4 and len(resumed.history) == 4
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-6, atol=1e-7)
