"""BDT decision-path encoding: a hand-made tree, a 2-leaf stump, path tokens, the full backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rarefy.errors import InputError
from rarefy.zoo.base import EventBatch
from rarefy.zoo.bdt import BDTFTTransformerBackend, PathTokens, path_encoding

from zoo_synth import FAST, relabel, separable

torch.set_num_threads(1)

# tree 0: root x1 <= 0.5 ? leaf 0 : (x0 <= 2 ? leaf 1 : leaf 2);  tree 1: a single leaf (no split)
TREES = [
    {"tree_structure": {"split_index": 0, "split_feature": 1, "threshold": 0.5,
                        "left_child": {"leaf_index": 0, "leaf_value": 0.1},
                        "right_child": {"split_index": 1, "split_feature": 0, "threshold": 2.0,
                                        "left_child": {"leaf_index": 1, "leaf_value": 0.2},
                                        "right_child": {"leaf_index": 2, "leaf_value": 0.3}}}},
    {"tree_structure": {"leaf_value": 0.0}},
]


def test_path_encoding_hand_tree():
    enc = path_encoding(TREES)
    assert enc.n_nodes == 2 and enc.node_feature.tolist() == [1, 0]
    assert enc.offset.tolist() == [0, 3]
    # node columns: (root on x1, right child on x0)
    want = {0: [-1, 0], 1: [1, -1], 2: [1, 1]}
    for leaf, code in want.items():
        assert enc.codes(np.array([[leaf, 0]])).tolist() == [code]


def test_path_tokens_sum_node_vectors_per_feature():
    enc = path_encoding(TREES)
    tok = PathTokens(enc, 2)
    with torch.no_grad():
        tok.weight.copy_(torch.tensor([[1.0, 2.0], [10.0, 20.0]]))     # V for node 0 (x1), node 1 (x0)
        tok.bias.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.5]]))           # e for slots x0, x1
    out = tok(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    # leaf 2: codes (+1 on x1-node, +1 on x0-node): x0 token = V1 + e0, x1 token = V0 + e1
    assert torch.equal(out[0], torch.tensor([[10.5, 20.0], [1.0, 2.5]]))
    # leaf 0: codes (-1, 0): x0 token = e0, x1 token = -V0 + e1
    assert torch.equal(out[1], torch.tensor([[0.5, 0.0], [-1.0, -1.5]]))


def test_two_leaf_stump_encodes_the_side_of_the_threshold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3)).astype(np.float32)
    y = (x[:, 1] > 0.7).astype(np.uint8)
    ev = EventBatch(x, y, np.zeros(2000, np.int64), ("t", "a", "b"), 1)
    be = BDTFTTransformerBackend(seed=0, n_trees=1, num_leaves=2, **FAST)
    be.prepare(ev)
    enc = be.encoding
    assert enc.n_nodes == 1 and enc.node_feature.tolist() == [1]
    thr = be.booster.dump_model()["tree_info"][0]["tree_structure"]["threshold"]
    assert abs(thr - 0.7) < 0.05
    codes = enc.codes(be.leaves(x))[:, 0]
    assert np.array_equal(codes, np.where(x[:, 1] <= thr, -1.0, 1.0))


def test_backend_separable_toy_save_load(tmp_path):
    tr, va, te = separable(seed=0), separable(seed=1, n_bkg=1000, n_sig=50), separable(seed=2, n_bkg=1000, n_sig=50)
    opts = {**FAST, "imbalance": [{"epochs": 3, "positive_ratio": 0.2}, {"epochs": 1}], "lr": 1e-2}
    be = BDTFTTransformerBackend(seed=1, **opts, d_token=8, n_layers=1, n_trees=4, num_leaves=4).fit(tr, va)
    p = be.score(te)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(te.y, p) > 0.95
    assert p.mean() == pytest.approx(te.y.mean(), abs=0.03)
    assert be.encoding.n_nodes > 0 and 1 in be.encoding.node_feature    # φ₀ (column 1) is split on
    assert np.array_equal(p, be.score(relabel(te, np.ones_like(te.y))))
    be.save(tmp_path)
    assert np.array_equal(BDTFTTransformerBackend.load(tmp_path).score(te), p)
    with pytest.raises(InputError, match="mixup"):
        BDTFTTransformerBackend(mixup={"enabled": True})


def test_pretraining_leaves_the_leaf_columns_alone():
    tr = separable(seed=0)
    be = BDTFTTransformerBackend(seed=0, **FAST, d_token=8, n_layers=1, n_trees=3, num_leaves=4,
                                 pretrain={"kind": "supcon", "epochs": 1, "batches_per_epoch": 3, "batch_size": 64,
                                           "noise": 1.0, "dropout": 0.5})
    be.fit(tr)            # noisy leaf indices would index outside the tables and raise
    assert be.pretrain_record.finished


def test_refit_in_the_same_workdir_resumes_from_the_checkpoints(tmp_path):
    tr, te = separable(seed=0, n_bkg=1500, n_sig=80), separable(seed=2, n_bkg=300, n_sig=20)
    opts = {**FAST, "checkpoint": True, "epochs": 2, "d_token": 8, "n_layers": 1, "n_trees": 3, "num_leaves": 4,
            "pretrain": {"kind": "infonce", "epochs": 1, "batches_per_epoch": 3, "batch_size": 64}}
    first = BDTFTTransformerBackend(seed=4, **opts).fit(tr, workdir=tmp_path)
    assert (tmp_path / "pretrain" / "checkpoint.pt").exists() and (tmp_path / "fit" / "checkpoint.pt").exists()
    again = BDTFTTransformerBackend(seed=4, **opts).fit(tr, workdir=tmp_path)   # nothing left to train
    assert np.array_equal(first.score(te), again.score(te))
    with pytest.raises(InputError, match="other data"):
        BDTFTTransformerBackend(seed=5, **opts).fit(tr, workdir=tmp_path)
