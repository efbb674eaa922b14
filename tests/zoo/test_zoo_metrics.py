"""Bench metrics against hand-computed values (rarefy.zoo.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from rarefy.zoo.metrics import bench_metrics, expected_calibration_error, pr_auc, precision_at_recall, roc_auc

# five events, ranked 0.9 (+), 0.8 (-), 0.7 (+), 0.3 (-), 0.1 (-)
Y = np.array([1, 0, 1, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.3, 0.1])


def test_pr_and_roc_auc_by_hand():
    # AP = Σ ΔR · P = 0.5 · 1 + 0.5 · 2/3
    assert pr_auc(Y, S) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 6 (pos, neg) pairs, 5 ordered correctly (0.7 < 0.8 is the one miss)
    assert roc_auc(Y, S) == pytest.approx(5 / 6)


def test_precision_at_recall_by_hand():
    assert precision_at_recall(Y, S, 0.40) == pytest.approx(1.0)   # threshold 0.9: recall 0.5, precision 1
    assert precision_at_recall(Y, S, 0.48) == pytest.approx(1.0)
    assert precision_at_recall(Y, S, 0.60) == pytest.approx(2 / 3)  # needs threshold 0.7: 2 of 3
    assert precision_at_recall(Y, S, 1.00) == pytest.approx(2 / 3)


def test_ece_by_hand_both_binnings():
    # width, 3 bins: [0,1/3): p .1,.3 (y 0,0) -> |0-.4|; [2/3,1]: p .7,.8,.9 (y 1,0,1) -> |2-2.4|
    assert expected_calibration_error(Y, S, 3, "width") == pytest.approx((0.4 + 0.4) / 5)
    # mass, 3 bins of the sorted p: {.1,.3}, {.7,.8}, {.9} -> |0-.4| + |1-1.5| + |1-.9|
    assert expected_calibration_error(Y, S, 3, "mass") == pytest.approx((0.4 + 0.5 + 0.1) / 5)
    # a constant predictor at the base rate: calibrated in one bin, not in single-event bins
    y = np.array([1, 0, 0, 0])
    assert expected_calibration_error(y, np.full(4, 0.25), 5, "width") == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(4, 0.25), 1, "mass") == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(4, 0.25), 4, "mass") == pytest.approx((0.75 + 3 * 0.25) / 4)
    with pytest.raises(ValueError):
        expected_calibration_error(Y, S, 3, "quantile")


def test_bench_metrics_keys_and_nan_without_classes():
    m = bench_metrics(Y, S, S, bins=3, binning="width")
    assert list(m) == ["pr_auc", "roc_auc", "precision_at_recall_0.40", "precision_at_recall_0.48", "ece"]
    assert m["ece"] == pytest.approx(0.16)
    assert np.isnan(bench_metrics(np.zeros(3), np.arange(3.0), None)["pr_auc"])
    assert np.isnan(bench_metrics(Y, S, None)["ece"])
