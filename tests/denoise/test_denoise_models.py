"""CNP models: size, permutation invariance, masking; leakage-free context/target splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from denoise_synth import synth

from rarefy.denoise import RESUM_WIDTHS, Normalizer, build_model, draw_bank, fold_banks, score


@pytest.mark.parametrize("kind", ["cnp", "attentive"])
def test_resum_size_and_shapes(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, 2, 3, RESUM_WIDTHS, RESUM_WIDTHS)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.8e5 < n_params < 1.5e5
    ctx_x, ctx_y = torch.randn(4, 10, 5), (torch.rand(4, 10) < 0.3).float()
    mask = torch.ones(4, 10, dtype=torch.bool)
    mu, lv = model(ctx_x, ctx_y, mask, torch.randn(7, 5), torch.tensor([0, 1, 2, 3, 0, 1, 2]))
    assert mu.shape == lv.shape == (7,)
    assert torch.isfinite(mu).all() and torch.isfinite(lv).all()


@pytest.mark.parametrize("kind", ["cnp", "attentive"])
def test_context_is_a_set_and_masked_entries_are_ignored(kind: str) -> None:
    torch.manual_seed(1)
    model = build_model(kind, 1, 2, [16, 16], [16, 16]).eval()
    ctx_x, ctx_y = torch.randn(2, 8, 3), (torch.rand(2, 8) < 0.5).float()
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    tgt, grp = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    ref = model(ctx_x, ctx_y, mask, tgt, grp)
    perm = torch.randperm(8)
    out = model(ctx_x[:, perm], ctx_y[:, perm], mask[:, perm], tgt, grp)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    ctx_x2, ctx_y2 = ctx_x.clone(), ctx_y.clone()
    ctx_x2[1, 5:] += 10.0
    ctx_y2[1, 5:] = 1 - ctx_y2[1, 5:]
    torch.testing.assert_close(model(ctx_x2, ctx_y2, mask, tgt, grp), ref)
    ctx_y2[1, 0] = 1 - ctx_y2[1, 0]  # an unmasked label does matter
    assert not torch.allclose(model(ctx_x2, ctx_y2, mask, tgt, grp)[0][grp == 1], ref[0][grp == 1])


def test_banks_are_disjoint_from_targets_by_construction() -> None:
    data = synth(5, 120)
    starts = data.run_starts
    train_bank = draw_bank(starts, data.run_ids, 16, seed=0, tag=1)
    assert (train_bank.count == 16).all()
    assert (data.run_of(train_bank.index) == np.arange(5)[:, None]).all()  # each bank from its own run
    pairs = fold_banks(starts, data.run_ids, 16, seed=3, n_folds=3)
    covered = np.zeros(data.n, int)
    for tmask, bank in pairs:
        assert not tmask[bank.flat()].any()
        covered += tmask
    assert (covered == 1).all()  # every event scored exactly once


def _random_model(data):
    torch.manual_seed(0)
    model = build_model("cnp", 1, 2, [16, 16], [16, 16]).eval()
    norm = Normalizer(np.zeros(1), np.ones(1), data.phi.mean(0), data.phi.std(0))
    return model, norm


@pytest.mark.parametrize("kind", ["cnp", "attentive"])
def test_no_leakage_shuffling_scored_labels_leaves_scores(kind: str) -> None:
    data = synth(4, 200, base=0.0)
    torch.manual_seed(0)
    model = build_model(kind, 1, 2, [16, 16], [16, 16]).eval()
    norm = Normalizer(np.zeros(1), np.ones(1), data.phi.mean(0), data.phi.std(0))
    targets = np.random.default_rng(1).random(data.n) < 0.3
    ref = score(model, data, norm, targets=targets, context_size=32, seed=5)
    assert np.isfinite(ref.p[targets]).all() and np.isnan(ref.p[~targets]).all()

    shuffled = synth(4, 200, base=0.0)
    rng = np.random.default_rng(2)
    t_idx = np.flatnonzero(targets)
    shuffled.y[t_idx] = rng.permutation(shuffled.y[t_idx])
    shuffled.y[t_idx[:20]] = 1 - shuffled.y[t_idx[:20]]  # and flip some outright
    got = score(model, shuffled, norm, targets=targets, context_size=32, seed=5)
    np.testing.assert_array_equal(got.p[targets], ref.p[targets])

    # the test can fail: changing the labels of context events does move the scores
    other = synth(4, 200, base=0.0)
    o_idx = np.flatnonzero(~targets)
    other.y[o_idx] = 1 - other.y[o_idx]
    moved = score(model, other, norm, targets=targets, context_size=32, seed=5)
    assert not np.allclose(moved.p[targets], ref.p[targets])


def test_no_leakage_with_folds() -> None:
    data = synth(4, 200, base=0.0)
    model, norm = _random_model(data)
    ref = score(model, data, norm, context_size=32, folds=2, seed=9)
    assert np.isfinite(ref.p).all()
    fold0 = fold_banks(data.run_starts, data.run_ids, 32, seed=9, n_folds=2)[0][0]
    changed = synth(4, 200, base=0.0)
    changed.y[fold0] = 1 - changed.y[fold0]  # every label of fold 0 flipped
    got = score(model, changed, norm, context_size=32, folds=2, seed=9)
    np.testing.assert_array_equal(got.p[fold0], ref.p[fold0])
    assert not np.allclose(got.p[~fold0], ref.p[~fold0])  # fold 1 is scored from fold 0's labels


def test_factorised_logit_is_phi_part_plus_low_rank_design_part() -> None:
    """μ = a(φ) + u(θ)·v(φ): with rank 1 and a linear u, μ is affine in θ at fixed φ, and reads no context."""
    torch.manual_seed(4)
    model = build_model("factorised", 3, 2, [16], [16, 16], rank=1).eval()
    ctx_x, ctx_y = torch.randn(1, 6, 5), torch.zeros(1, 6)
    mask = torch.ones(1, 6, dtype=torch.bool)
    phi = torch.randn(1, 2).expand(5, -1)
    t = torch.linspace(-1, 1, 5)[:, None]
    theta = torch.cat([t, 0.3 * t, torch.full_like(t, 0.5)], dim=1)   # a straight line through θ space
    grp = torch.zeros(5, dtype=torch.long)
    mu, lv = model(ctx_x, ctx_y, mask, torch.cat([theta, phi], dim=1), grp)
    torch.testing.assert_close(mu[2:] - 2 * mu[1:-1] + mu[:-2], torch.zeros(3), atol=1e-5, rtol=0)
    assert (mu.max() - mu.min()) > 1e-4                      # ... and θ does move it
    assert torch.allclose(lv, lv[0].expand_as(lv))            # σ depends on φ only
    mu2, _ = model(ctx_x + 3.0, 1 - ctx_y, mask, torch.cat([theta, phi], dim=1), grp)
    torch.testing.assert_close(mu2, mu)                       # the context does not enter
    other = torch.randn(5, 2)
    mu3, _ = model(ctx_x, ctx_y, mask, torch.cat([theta, other], dim=1), grp)
    assert not torch.allclose(mu3, mu)


@pytest.mark.parametrize("kind", ["cnp", "attentive", "factorised"])
def test_init_prior_starts_the_predictive_probability_at_the_prior(kind: str) -> None:
    from rarefy.nn.losses import predictive

    torch.manual_seed(5)
    model = build_model(kind, 2, 3, [16, 16], [16, 16]).eval()
    model.init_prior(1e-4)
    ctx_x, ctx_y = torch.randn(2, 8, 5), torch.zeros(2, 8)
    mask = torch.ones(2, 8, dtype=torch.bool)
    with torch.no_grad():
        mu, lv = model(ctx_x, ctx_y, mask, torch.randn(400, 5), torch.randint(0, 2, (400,)))
    med = float(predictive(mu, lv)[0].median())
    assert 2e-5 < med < 5e-4, med
