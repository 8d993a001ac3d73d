"""Metric values against numbers worked out by hand and against scikit-learn on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score, root_mean_squared_error

from aiida_cgcnn.training.metrics import classification_metrics, per_target_metrics, regression_metrics


def test_regression_metrics_by_hand():
    target = np.array([1.0, 2.0, 3.0, 6.0])
    prediction = np.array([2.0, 2.0, 1.0, 6.0])  # errors 1, 0, -2, 0
    metrics = regression_metrics(prediction, target)
    assert metrics["mae"] == pytest.approx(0.75)
    assert metrics["rmse"] == pytest.approx(np.sqrt(5 / 4))
    # mean 3: deviations 2, 1, 0, 3
    assert metrics["mad"] == pytest.approx(1.5)
    assert metrics["mae_over_mad"] == pytest.approx(0.5)
    # SS_res 5, SS_tot 4 + 1 + 0 + 9 = 14
    assert metrics["r2"] == pytest.approx(1 - 5 / 14)


def test_regression_metrics_against_sklearn_per_target_then_averaged():
    rng = np.random.default_rng(7)
    # two targets on very different scales: each is scored alone, then the scores are averaged
    target = np.column_stack([rng.normal(0, 1, 40), rng.normal(100, 30, 40)])
    prediction = target + np.column_stack([rng.normal(0, 0.3, 40), rng.normal(5, 20, 40)])
    metrics = regression_metrics(prediction, target)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(target, prediction), rel=1e-12)
    assert metrics["rmse"] == pytest.approx(root_mean_squared_error(target, prediction), rel=1e-12)
    assert metrics["r2"] == pytest.approx(r2_score(target, prediction), rel=1e-12)
    per = per_target_metrics(prediction, target, ["a", "b"])
    for k, name in enumerate(["a", "b"]):
        assert per[name]["rmse"] == pytest.approx(root_mean_squared_error(target[:, k], prediction[:, k]))
        assert per[name]["r2"] == pytest.approx(r2_score(target[:, k], prediction[:, k]))
        mad = np.mean(np.abs(target[:, k] - target[:, k].mean()))
        assert per[name]["mae_over_mad"] == pytest.approx(
            mean_absolute_error(target[:, k], prediction[:, k]) / mad
        )
    assert metrics["mae_over_mad"] == pytest.approx(np.mean([per[n]["mae_over_mad"] for n in "ab"]))


def test_constant_targets_have_no_r2_or_ratio():
    metrics = regression_metrics(np.array([1.0, 2.0]), np.array([3.0, 3.0]))
    assert np.isnan(metrics["r2"]) and np.isnan(metrics["mae_over_mad"]) and metrics["mae"] == 1.5


def test_binary_roc_auc_with_ties_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    score = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.4, 0.9, 0.2])
    # positives 0.4, 0.8, 0.4, 0.9 against negatives 0.1, 0.4, 0.4, 0.2: each 0.4 beats two and
    # ties two (half each): (3 + 4 + 3 + 4) / 16
    metrics = classification_metrics(np.column_stack([1 - score, score]), labels)
    assert metrics["roc_auc"] == pytest.approx(14 / 16)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, score))
    # argmax of (1 - s, s): s > 0.5 is class 1; the ties at 0.4 are class 0
    assert metrics["accuracy"] == pytest.approx(6 / 8)


def test_several_classes_are_one_vs_rest_macro_averaged_as_sklearn():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2, 3], 10)
    rng.shuffle(labels)
    logits = rng.normal(size=(40, 4)) + 1.5 * np.eye(4)[labels]
    logits = np.round(logits, 1)  # coarse scores: many ties within each column
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metrics = classification_metrics(probabilities, labels)
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert metrics["roc_auc"] == pytest.approx(expected, rel=1e-12)
    per_class = [roc_auc_score(labels == c, probabilities[:, c]) for c in range(4)]
    assert metrics["roc_auc"] == pytest.approx(np.mean(per_class), rel=1e-12)
    assert metrics["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == labels))


def test_a_class_absent_from_the_labels_is_left_out_of_the_average():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]])
    metrics = classification_metrics(probabilities, labels)
    present = [roc_auc_score(labels == c, probabilities[:, c]) for c in (0, 1)]
    assert metrics["roc_auc"] == pytest.approx(np.mean(present))
