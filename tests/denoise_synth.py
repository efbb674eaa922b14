"""Small synthetic event sets for the denoiser tests (not a test module)."""

from __future__ import annotations

import numpy as np

from rarefy.denoise import EventData

TINY = {"model": {"encoder": [16, 16], "decoder": [16, 16]}, "progress": False, "tensorboard": False,
        "batch_size": 256, "context_size": 16, "context_per_batch": 64, "min_context": 2, "lr": 3e-3}


def synth(n_runs: int = 6, per_run: int = 300, seed: int = 0, base: float = -2.0) -> EventData:
    """Events whose signal probability rises with φ₀ and θ; run ids r00, r01, ..."""
    rng = np.random.default_rng(seed)
    theta = np.repeat(rng.random((n_runs, 1)), per_run, axis=0)
    phi = rng.normal(size=(n_runs * per_run, 2)).astype(np.float32)
    logit = base + 1.5 * phi[:, 0] + 2.0 * theta[:, 0]
    y = (rng.random(len(phi)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    rid = np.repeat([f"r{i:02d}" for i in range(n_runs)], per_run)
    return EventData.from_arrays(theta, phi, y, rid, theta_names=["t"], phi_names=["e", "z"],
                                 fidelity=np.full(len(y), "lf"))


def config(**over: object) -> dict:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg.update(over)
    return cfg
