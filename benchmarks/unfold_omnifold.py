"""rarefy's OmniFold against the ``omnifold`` package's ``MultiFold`` on the same Gaussian toy, in one process.

For each seed, one pseudo-experiment of :class:`rarefy.unfold.toy.GaussianToy`
(``--n-sim`` simulated, ``--n-data`` measured events) is unfolded by

* :class:`rarefy.unfold.omnifold.OmniFold` (``--iterations``, ``--members`` ensemble
  members: Poisson(1) bootstrap of data and simulation weights, own network seeds);
* ``omnifold.MultiFold`` (PyPI ``omnifold``, TensorFlow) with the same iterations and
  ``--members`` runs, each on its own Poisson(1) bootstrap of data and simulation
  (``DataLoader(bootstrap=True)``, numpy seeded per run), an MLP of the same widths
  and activation, ``normalize=True`` (data and passing simulation to the same total, as
  the package's examples do), failing events' reconstructed value set to 0 (their weight
  in step 1 is 0).

Per bin of the toy's default edges (20 bins over μ ± 3σ of the truth): both unfolded
probabilities (member mean) and errors (member std); the difference in units of the
combined error √(s_a² + s_b²) (conservative: both see the same data, so their
statistical fluctuations are correlated), its χ²/ndf and largest |pull|; both against the
exact truth; means and widths; wall times and their ratio. Both run with one CPU thread; wall and CPU
(process) times are reported, CPU time being the fairer on a shared machine.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/unfold_omnifold.py --seeds 1081 --n-sim 20000 --n-data 10000 \
        --iterations 6 --members 8

The package trains for at most ``--pkg-epochs`` (50) epochs with early stopping after
``--pkg-patience`` (10), its own defaults: stopped earlier, each of its iterations pulls
less far from the prior and the two disagree (docs/unfold/omnifold.md).

(needs ``pip install -e ".[omnifold]"``: TensorFlow). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from contextlib import redirect_stdout

import numpy as np


def _moments(x: np.ndarray, ws: list[np.ndarray]) -> dict[str, float]:
    means, widths = [], []
    for w in ws:
        p = w / w.sum()
        m = float(np.sum(p * x))
        means.append(m)
        widths.append(float(np.sqrt(np.sum(p * (x - m) ** 2))))
    return {"mean": float(np.mean(means)), "mean_sd": float(np.std(means, ddof=1)),
            "width": float(np.mean(widths)), "width_sd": float(np.std(widths, ddof=1))}


def _hist(x: np.ndarray, ws: list[np.ndarray], edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.array([np.histogram(x, bins=edges, weights=w)[0] / w.sum() for w in ws])
    return h.mean(0), h.std(0, ddof=1)


def package_members(problem, iterations: int, members: int, hidden: tuple[int, ...], activation: str,
                    epochs: int, batch_size: int, lr: float, early_stop: int, seed: int) -> list[np.ndarray]:
    """``members`` bootstrap runs of ``omnifold.MultiFold``; the final simulation weights of each."""
    import omnifold
    import tensorflow as tf

    # Keras 3 deserialises the compiled loss when MultiFold clones its models: make the package's loss findable.
    from omnifold.net import weighted_binary_crossentropy

    tf.keras.utils.get_custom_objects()["weighted_binary_crossentropy"] = weighted_binary_crossentropy
    reco = np.where(problem.sim_pass[:, None], problem.sim_rec, 0.0).astype(np.float32)
    gen = problem.sim_gen.astype(np.float32)
    out = []
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(open(os.devnull, "w")):
        for k in range(members):
            np.random.seed(seed * 1000 + k)
            tf.keras.utils.set_random_seed(seed * 1000 + k)
            data = omnifold.DataLoader(reco=problem.data_rec.astype(np.float32),
                                       weight=problem.data_weight.astype(np.float32), normalize=True,
                                       bootstrap=True)
            mc = omnifold.DataLoader(reco=reco, gen=gen, pass_reco=problem.sim_pass,
                                     weight=problem.sim_weight.astype(np.float32), normalize=True,
                                     bootstrap=True)
            model_reco = omnifold.MLP(reco.shape[1], layer_sizes=list(hidden), activation=activation)
            model_gen = omnifold.MLP(gen.shape[1], layer_sizes=list(hidden), activation=activation)
            mf = omnifold.MultiFold(f"toy{seed}_{k}", model_reco, model_gen, data, mc,
                                    weights_folder=os.path.join(tmp, "weights"), log_folder=tmp,
                                    niter=iterations, batch_size=batch_size, epochs=epochs, lr=lr,
                                    early_stop=early_stop, verbose=False)
            mf.Unfold()
            out.append(np.asarray(mc.weight, float) * np.asarray(mf.weights_push, float))
    return out


def one(seed: int, a: argparse.Namespace) -> dict:
    import torch

    from rarefy.unfold.metrics import chi2_per_ndf
    from rarefy.unfold.omnifold import OmniFold
    from rarefy.unfold.toy import GaussianToy

    toy = GaussianToy()
    problem, _ = toy.problem(a.n_sim, a.n_data, seed)
    edges = toy.default_edges()
    truth = toy.bin_probabilities(edges)
    x = problem.sim_gen[:, 0]
    torch.set_num_threads(1)
    of = OmniFold(iterations=a.iterations, ensemble=a.members)
    t0, c0 = time.perf_counter(), time.process_time()
    res = of.unfold(problem, seed)
    t_rarefy, c_rarefy = time.perf_counter() - t0, time.process_time() - c0
    w_r = [w for _, w in res.members]
    t0, c0 = time.perf_counter(), time.process_time()
    w_p = package_members(problem, a.iterations, a.members, of.hidden, of.activation, a.pkg_epochs,
                          a.pkg_batch_size, a.pkg_lr, a.pkg_patience, seed)
    t_pkg, c_pkg = time.perf_counter() - t0, time.process_time() - c0
    hr, sr = _hist(x, w_r, edges)
    hp, sp = _hist(x, w_p, edges)
    # bins where both ensembles agree exactly (no simulated event in the bin) carry no test
    both = (sr ** 2 + sp ** 2) > 0
    pull = (hr - hp)[both] / np.sqrt(sr ** 2 + sp ** 2)[both]
    pr = (hr - truth)[sr > 0] / sr[sr > 0]
    pp = (hp - truth)[sp > 0] / sp[sp > 0]
    return {"seed": seed, "bins_rarefy": hr.round(6).tolist(), "sd_rarefy": sr.round(6).tolist(),
            "bins_package": hp.round(6).tolist(), "sd_package": sp.round(6).tolist(),
            "diff_pulls": pull.round(3).tolist(), "diff_ndf": int(both.sum()),
            "diff_chi2_ndf": chi2_per_ndf(hr, sr, hp, sp), "diff_max_abs_pull": float(np.max(np.abs(pull))),
            "truth_chi2_ndf_rarefy": chi2_per_ndf(hr, sr, truth),
            "truth_chi2_ndf_package": chi2_per_ndf(hp, sp, truth),
            "coverage_rarefy": float(np.mean(np.abs(pr) <= 1)), "coverage_package": float(np.mean(np.abs(pp) <= 1)),
            "moments_rarefy": _moments(x, w_r), "moments_package": _moments(x, w_p),
            "wall_s_rarefy": t_rarefy, "wall_s_package": t_pkg, "time_ratio_package_over_rarefy": t_pkg / t_rarefy,
            "cpu_s_rarefy": c_rarefy, "cpu_s_package": c_pkg, "cpu_ratio_package_over_rarefy": c_pkg / c_rarefy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1001])
    ap.add_argument("--n-sim", type=int, default=200_000)
    ap.add_argument("--n-data", type=int, default=100_000)
    ap.add_argument("--iterations", type=int, default=None, help="default: OmniFold's")
    ap.add_argument("--members", type=int, default=None, help="default: OmniFold's ensemble")
    ap.add_argument("--pkg-epochs", type=int, default=50)
    ap.add_argument("--pkg-batch-size", type=int, default=1024)
    ap.add_argument("--pkg-lr", type=float, default=1e-3)
    ap.add_argument("--pkg-patience", type=int, default=10)
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    import sys

    with redirect_stdout(sys.stderr):  # the package prints at import; stdout holds only the JSON line
        import omnifold  # noqa: F401
        import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from rarefy.unfold.omnifold import OmniFold

    d = OmniFold()
    a.iterations = a.iterations or d.iterations
    a.members = a.members or d.ensemble
    rows = [one(s, a) for s in a.seeds]
    summary = {
        "diff_chi2_ndf_mean": float(np.mean([r["diff_chi2_ndf"] for r in rows])),
        "diff_max_abs_pull": float(np.max([r["diff_max_abs_pull"] for r in rows])),
        "coverage_rarefy_pooled": float(np.mean([r["coverage_rarefy"] for r in rows])),
        "coverage_package_pooled": float(np.mean([r["coverage_package"] for r in rows])),
        "wall_s_rarefy_mean": float(np.mean([r["wall_s_rarefy"] for r in rows])),
        "wall_s_package_mean": float(np.mean([r["wall_s_package"] for r in rows])),
    }
    summary["time_ratio_package_over_rarefy"] = summary["wall_s_package_mean"] / summary["wall_s_rarefy_mean"]
    summary["cpu_s_rarefy_mean"] = float(np.mean([r["cpu_s_rarefy"] for r in rows]))
    summary["cpu_s_package_mean"] = float(np.mean([r["cpu_s_package"] for r in rows]))
    summary["cpu_ratio_package_over_rarefy"] = summary["cpu_s_package_mean"] / summary["cpu_s_rarefy_mean"]
    print(json.dumps({"benchmark": "unfold_omnifold", "n_sim": a.n_sim, "n_data": a.n_data,
                      "iterations": a.iterations, "members": a.members,
                      "package": {"epochs": a.pkg_epochs, "batch_size": a.pkg_batch_size, "lr": a.pkg_lr,
                                  "early_stop": a.pkg_patience},
                      "summary": summary, "per_seed": rows}))


if __name__ == "__main__":
    main()
