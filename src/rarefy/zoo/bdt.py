"""BDT decision-path encodings feeding an FT-Transformer (backend ``bdt_ft_transformer``).

**Stage 1: boosted trees.** A LightGBM gradient-boosted classifier (``n_trees`` trees of
at most ``num_leaves`` leaves, learning rate ``bdt_learning_rate``) is fitted to the raw
training features: every signal event plus at most ``bdt_max_events`` background events,
the two classes weighted to equal total weight (so that the splits carve out the rare
signal region at any imbalance). Only its **splits** are used, not its predictions.

**Stage 2: path codes.** Each split node ``n`` of each tree tests one feature ``f(n)``
(``x_f <= threshold``). An event follows one root-to-leaf path per tree; its code for
node ``n`` is ``-1`` when the path goes left at ``n``, ``+1`` when it goes right, ``0``
when the path does not pass ``n``. The codes of a tree are a function of the leaf the
event lands in, so they are stored as a per-leaf table and looked up from LightGBM's
leaf indices (``pred_leaf``).

**Stage 3: tokens.** Every feature ``j`` that some split tests gets an extra token:
``u_j = Σ_{n: f(n) = j} c_n(x) V_n + e_j`` (learned ``V_n, e_j ∈ R^{d_token}``) — the
decision paths its splits send the event along, summed over all trees. These tokens join
the FT-Transformer's numeric feature tokens and ``[CLS]`` (:mod:`rarefy.zoo.ft_transformer`),
which is trained as in ``ft_transformer`` (calibrated probability). The network input is
the normalised features followed by the ``n_trees`` leaf indices; mixup is not supported
(a mixture has no leaf of its own) and contrastive views leave the leaf columns alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from ..optional import require
from .base import EventBatch
from .ft_transformer import FTTransformerBackend, FTTransformerOptions

__all__ = ["BDTFTTransformerBackend", "BDTOptions", "PathEncoding", "PathTokens", "path_encoding"]


class BDTOptions(FTTransformerOptions):
    """FT-Transformer options plus the trees: ``n_trees``, ``num_leaves``, ``bdt_learning_rate``,
    ``bdt_max_events`` (background cap of the tree fit), ``min_child_samples``, ``n_jobs``."""

    n_trees: int = Field(default=16, ge=1)
    num_leaves: int = Field(default=8, ge=2)
    bdt_learning_rate: float = Field(default=0.1, gt=0)
    bdt_max_events: int = Field(default=200_000, ge=10)
    min_child_samples: int = Field(default=20, ge=1)
    n_jobs: int = Field(default=1, ge=1)


class PathEncoding:
    """Per-tree leaf → path-code tables of a tree ensemble.

    Attributes: ``table`` (Σ leaves, N) float32 — row ``offset[t] + leaf`` holds tree t's
    codes (-1 left, +1 right, 0 off-path) in the global node columns; ``offset`` (T,);
    ``node_feature`` (N,) the feature each node tests.
    """

    def __init__(self, table: np.ndarray, offset: np.ndarray, node_feature: np.ndarray) -> None:
        self.table = table
        self.offset = offset
        self.node_feature = node_feature

    @property
    def n_nodes(self) -> int:
        return int(self.table.shape[1])

    def codes(self, leaves: np.ndarray) -> np.ndarray:
        """(n, N) path codes from (n, T) leaf indices."""
        return self.table[np.asarray(leaves, np.int64) + self.offset[None, :]].sum(axis=1)


def path_encoding(trees: list[dict[str, Any]]) -> PathEncoding:
    """Tables from LightGBM ``dump_model()['tree_info']`` tree structures (see :class:`PathEncoding`)."""
    nodes: list[tuple[int, int]] = []         # (tree, split_index) in column order
    feats: list[int] = []
    per_tree: list[list[dict[int, int]]] = []  # per tree, per leaf: column -> code
    for t, info in enumerate(trees):
        leaves: dict[int, dict[int, int]] = {}

        def walk(node: dict[str, Any], path: dict[int, int]) -> None:
            if "split_index" not in node:
                leaves[int(node.get("leaf_index", 0))] = dict(path)
                return
            col = len(nodes)
            nodes.append((t, int(node["split_index"])))
            feats.append(int(node["split_feature"]))
            walk(node["left_child"], {**path, col: -1})
            walk(node["right_child"], {**path, col: 1})

        walk(info["tree_structure"], {})
        per_tree.append([leaves[i] for i in range(len(leaves))])
    n_nodes = len(nodes)
    offset = np.cumsum([0] + [len(p) for p in per_tree[:-1]]).astype(np.int64)
    table = np.zeros((sum(len(p) for p in per_tree), n_nodes), np.float32)
    for t, leaves_t in enumerate(per_tree):
        for i, path in enumerate(leaves_t):
            for col, c in path.items():
                table[offset[t] + i, col] = c
    return PathEncoding(table, offset, np.asarray(feats, np.int64))


class PathTokens(torch.nn.Module):
    """Leaf indices (B, T) → one token per split feature, ``Σ_{n: f(n)=j} c_n V_n + e_j`` (B, F', d)."""

    def __init__(self, enc: PathEncoding, d_token: int) -> None:
        super().__init__()
        used = np.unique(enc.node_feature)
        slot = {f: i for i, f in enumerate(used)}
        self.register_buffer("table", torch.as_tensor(enc.table))
        self.register_buffer("offset", torch.as_tensor(enc.offset))
        self.register_buffer("slot", torch.as_tensor([slot[f] for f in enc.node_feature], dtype=torch.long))
        self.n_slots = len(used)
        s = 1.0 / np.sqrt(d_token)
        self.weight = torch.nn.Parameter(torch.empty(enc.n_nodes, d_token).uniform_(-s, s))
        self.bias = torch.nn.Parameter(torch.empty(self.n_slots, d_token).uniform_(-s, s))

    def codes(self, leaves: torch.Tensor) -> torch.Tensor:
        return self.table[leaves.long() + self.offset[None, :]].sum(dim=1)

    def forward(self, leaves: torch.Tensor) -> torch.Tensor:
        c = self.codes(leaves)                                            # (B, N)
        per_node = c[:, :, None] * self.weight[None]                      # (B, N, d)
        out = torch.zeros(len(c), self.n_slots, self.weight.shape[1], dtype=c.dtype, device=c.device)
        return out.index_add_(1, self.slot, per_node) + self.bias[None]


class BDTFTTransformerBackend(FTTransformerBackend):
    """``bdt_ft_transformer``: FT-Transformer with BDT decision-path tokens (see the module docstring)."""

    name: ClassVar[str] = "bdt_ft_transformer"
    Options: ClassVar[type[BDTOptions]] = BDTOptions
    option_checks = FTTransformerBackend.option_checks + (
        (lambda o: not o.mixup.enabled, "mixup is not supported (a mixed event has no tree leaves)"),)

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed, **options)
        self.booster: Any = None
        self.encoding: PathEncoding | None = None

    def prepare(self, train: EventBatch) -> None:
        lgb = require("lightgbm")

        o = self.options
        y = np.asarray(train.y) >= 0.5
        rng = np.random.default_rng([self.seed, 11])
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        n_neg_all = len(neg)
        if len(neg) > o.bdt_max_events:
            neg = np.sort(rng.choice(neg, o.bdt_max_events, replace=False))
        idx = np.sort(np.concatenate([pos, neg]))
        w = np.ones(len(idx))
        if len(pos) and len(neg):               # equal total weight per class
            w = np.where(y[idx], 0.5 / len(pos), 0.5 / len(neg)) * len(idx)
        params = {"objective": "binary", "num_leaves": o.num_leaves, "learning_rate": o.bdt_learning_rate,
                  "min_child_samples": o.min_child_samples, "min_sum_hessian_in_leaf": 1e-6, "num_threads": o.n_jobs,
                  "deterministic": True, "force_row_wise": True, "seed": self.seed, "verbosity": -1}
        data = lgb.Dataset(np.asarray(train.x[idx], np.float64), label=y[idx].astype(np.float64), weight=w,
                           feature_name=[f"f{i}" for i in range(train.x.shape[1])], free_raw_data=True)
        self.booster = lgb.train(params, data, num_boost_round=o.n_trees)
        self._set_encoding()
        import logging

        logging.getLogger(__name__).info("%s: %d trees, %d split nodes on %d features (fit on %d of %d background)",
                                         self.name, self.booster.num_trees(), self.encoding.n_nodes,
                                         len(np.unique(self.encoding.node_feature)), len(neg), n_neg_all)

    def _set_encoding(self) -> None:
        self.encoding = path_encoding(self.booster.dump_model()["tree_info"])

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """(n, T) leaf index of each event in each tree."""
        out = self.booster.predict(np.asarray(x, np.float64), pred_leaf=True, num_threads=self.options.n_jobs)
        return np.asarray(out, np.int64).reshape(len(x), -1)

    def features(self, x: np.ndarray) -> torch.Tensor:
        base = super().features(x)
        return torch.cat([base, torch.from_numpy(self.leaves(x).astype(np.float32))], dim=1)

    def extra_tokens(self) -> torch.nn.Module | None:
        assert self.encoding is not None
        if self.encoding.n_nodes == 0:
            return None
        return PathTokens(self.encoding, self.options.d_token)

    def extra_state(self) -> dict[str, Any]:
        return {"booster": self.booster.model_to_string()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        lgb = require("lightgbm")

        self.booster = lgb.Booster(model_str=state["booster"])
        self._set_encoding()
