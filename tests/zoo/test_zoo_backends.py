"""Values of the zoo backends owned by the bench: isolation forest, flow ratio, CNP / attentive NP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rarefy.zoo.base import EventBatch
from rarefy.zoo.flow_ratio import FlowRatioBackend
from rarefy.zoo.isolation_forest import IsolationForestBackend
from rarefy.zoo.neural_process import AttentiveNPBackend, CNPBackend, to_event_data


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def batch(x: np.ndarray, y: np.ndarray, run: np.ndarray | None = None, n_theta: int = 0) -> EventBatch:
    x = np.asarray(x, np.float32)
    run = np.zeros(len(x), np.int64) if run is None else run
    return EventBatch(x, np.asarray(y, np.uint8), run, tuple(f"f{j}" for j in range(x.shape[1])), n_theta)


def test_isolation_forest_ranks_the_obvious_outlier_first(tmp_path):
    rng = np.random.default_rng(0)
    bg = rng.standard_normal((3000, 3))
    sig = rng.standard_normal((30, 3)) + 6.0          # signal far from the background: must not be used to fit
    train = batch(np.concatenate([bg, sig]), np.r_[np.zeros(3000), np.ones(30)])
    m = IsolationForestBackend(seed=0, n_estimators=100).fit(train)
    test = rng.standard_normal((200, 3))
    test[17] = [5.0, -5.0, 5.0]
    s = m.score(batch(test, np.zeros(200)))
    assert int(np.argmax(s)) == 17 and s[17] > np.sort(s)[-2] + 0.05
    # fitted on background only: signal-like events sit far out, AUC ~ 1
    ev = batch(np.concatenate([rng.standard_normal((500, 3)), rng.standard_normal((50, 3)) + 6.0]),
               np.r_[np.zeros(500), np.ones(50)])
    assert roc_auc_score(ev.y, m.score(ev)) > 0.99
    m.save(tmp_path / "if")
    np.testing.assert_array_equal(IsolationForestBackend.load(tmp_path / "if").score(ev), m.score(ev))
    assert not m.probabilistic


class _TouchOnLoad:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_isolation_forest_saves_no_pickle_and_loads_none(tmp_path):
    import pickle

    rng = np.random.default_rng(1)
    train = batch(rng.standard_normal((400, 2)), np.zeros(400))
    m = IsolationForestBackend(seed=3, n_estimators=20).fit(train)
    m.save(tmp_path / "if")
    saved = sorted(p.name for p in (tmp_path / "if").iterdir())
    marker = tmp_path / "marker"
    for name in ("forest.joblib", "forest.pkl"):      # a crafted run directory
        (tmp_path / "if" / name).write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    again = IsolationForestBackend.load(tmp_path / "if")
    assert not marker.exists(), "loading the backend ran code from a pickle"
    assert saved == ["backend.json", "background.npy"]
    ev = batch(rng.standard_normal((50, 2)), np.zeros(50))
    np.testing.assert_array_equal(again.score(ev), m.score(ev))


def test_flow_ratio_matches_the_analytic_log_ratio_of_two_gaussians(tmp_path):
    # background N(0, I), signal N(μ, I): log q_s/q_b = x·μ - |μ|²/2
    rng = np.random.default_rng(1)
    mu = np.array([1.0, -0.5])
    nb, ns = 20000, 2000
    x = np.concatenate([rng.standard_normal((nb, 2)), rng.standard_normal((ns, 2)) + mu])
    y = np.r_[np.zeros(nb), np.ones(ns)]
    xv = np.concatenate([rng.standard_normal((4000, 2)), rng.standard_normal((400, 2)) + mu])
    yv = np.r_[np.zeros(4000), np.ones(400)]
    m = FlowRatioBackend(seed=0, transforms=2, hidden=(32, 32), noise=0.0, epochs=30, signal_epochs=200,
                         anchor=1e-4).fit(batch(x, y), batch(xv, yv))
    g = np.array([[0, 0], [1, -0.5], [-1, 0.5], [2, 0], [0.5, -0.25], [0, 1]], np.float64)
    lr = m.log_ratio(batch(g, np.zeros(len(g))))
    np.testing.assert_allclose(lr, g @ mu - 0.5 * mu @ mu, atol=0.25)
    # probability = sigmoid(log-ratio + log prior odds), prior = training signal fraction
    p = m.score(batch(g, np.zeros(len(g))))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(lr + np.log(ns / nb)))), rtol=1e-9)
    m.save(tmp_path / "fr")
    np.testing.assert_allclose(FlowRatioBackend.load(tmp_path / "fr").score(batch(g, np.zeros(len(g)))), p, rtol=1e-6)


def test_flow_ratio_with_few_positives_stays_near_zero_far_from_them():
    # 8 positives: the anchored signal flow must not invent large ratios where there is no signal
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal((5000, 2)), rng.standard_normal((8, 2)) * 0.3 + [2.0, 0.0]])
    y = np.r_[np.zeros(5000), np.ones(8)]
    m = FlowRatioBackend(seed=0, transforms=2, hidden=(16, 16), epochs=10, signal_epochs=30).fit(batch(x, y))
    lr = m.log_ratio(batch(np.array([[2.0, 0.0], [-2.0, 0.0]]), np.zeros(2)))
    assert lr[0] > lr[1]                 # the positives' region scores higher ...
    assert abs(lr[1]) < 2.0              # ... and the far side stays close to the background


def _toy(nruns: int, per: int, first: int, rng: np.random.Generator) -> EventBatch:
    """Separable toy: signal iff φ0 + noise > 1.5 (about 7 %), θ one value per run."""
    run = np.repeat(np.arange(first, first + nruns), per)
    theta = rng.uniform(0, 1, nruns)[run - first]
    phi = rng.standard_normal((len(run), 2))
    y = (phi[:, 0] + 0.3 * rng.standard_normal(len(run)) > 1.5).astype(np.uint8)
    return batch(np.column_stack([theta, phi]), y, run.astype(np.int64), n_theta=1)


def test_event_data_round_trip_keeps_the_event_order():
    rng = np.random.default_rng(3)
    b = _toy(3, 5, 0, rng)
    perm = rng.permutation(len(b))
    shuffled = b.subset(perm)
    data, order = to_event_data(shuffled)
    np.testing.assert_array_equal(data.phi, shuffled.x[order][:, 1:])
    assert data.run_ids == sorted(data.run_ids) and data.n_runs == 3


@pytest.mark.parametrize("cls", [CNPBackend, AttentiveNPBackend])
def test_neural_process_backend_learns_a_separable_toy(cls, tmp_path):
    rng = np.random.default_rng(4)
    train, val, test = _toy(16, 400, 0, rng), _toy(4, 400, 100, rng), _toy(6, 400, 200, rng)
    m = cls(seed=0, model={"encoder": [16], "decoder": [32, 32]}, epochs=8, batch_size=256, context_size=16, lr=3e-3,
            tensorboard=True)
    m.fit(train, val, workdir=tmp_path / "work")
    p = m.score(test)
    assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(test.y, p) > 0.95
    # calibrated: positives get high, background low probabilities; the mean matches the rate
    assert p[test.y == 1].mean() > 0.35 and p[test.y == 0].mean() < 0.08
    assert abs(p.mean() - test.y.mean()) < 0.03
    assert (tmp_path / "work" / "checkpoint.pt").exists() and (tmp_path / "work" / "tensorboard").is_dir()
    m.save(tmp_path / "model")
    np.testing.assert_allclose(cls.load(tmp_path / "model").score(test), p, rtol=1e-5, atol=1e-7)


def test_attentive_target_features_equal_torch_multihead_attention():
    """The per-group projection path computes what nn.MultiheadAttention computes per target."""
    from rarefy.denoise.models import AttentiveCNP

    torch.manual_seed(0)
    m = AttentiveCNP(2, 3, [8], [8], rep_dim=8, heads=2)
    u, ctx, b = 4, 5, 30
    ctx_x, ctx_y = torch.randn(u, ctx, 5), (torch.rand(u, ctx) < 0.3).float()
    mask = torch.rand(u, ctx) < 0.7
    mask[2] = False                                      # a group with no context at all
    mask[1, 0] = True
    x, g = torch.randn(b, 5), torch.randint(0, u, (b,))
    g[:3] = 2
    with torch.no_grad():
        h = m.encode(ctx_x, ctx_y, mask)
        rep = m.pool(h, mask)
        got = m.target_features(h, ctx_x, mask, rep, x, g)
        tm = mask.index_select(0, g).clone()
        empty = ~tm.any(dim=1)
        tm[empty, 0] = True
        ref, _ = m.attention(m.query(x).unsqueeze(1), m.key(ctx_x).index_select(0, g), h.index_select(0, g),
                             key_padding_mask=~tm, need_weights=False)
        ref = ref.squeeze(1) * (~empty).unsqueeze(-1)
    torch.testing.assert_close(got[:, 8:16], ref, rtol=1e-5, atol=1e-6)
    assert torch.all(got[:3, 8:16] == 0)                  # no context: zero attention output
    torch.testing.assert_close(got[:, :8], rep.index_select(0, g))
