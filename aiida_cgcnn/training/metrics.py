"""Metrics for regression (MAE, RMSE, MAE/MAD, R²) and classification (accuracy, ROC-AUC)."""

from __future__ import annotations

import numpy as np

__all__ = ["classification_metrics", "per_target_metrics", "regression_metrics"]


def regression_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Per-target-averaged metrics. MAD is the mean absolute deviation of the targets from their mean."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(len(target), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    error = prediction - target
    mae = np.mean(np.abs(error), axis=0)
    rmse = np.sqrt(np.mean(error**2, axis=0))
    mad = np.mean(np.abs(target - target.mean(axis=0)), axis=0)
    ss_res = np.sum(error**2, axis=0)
    ss_tot = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mad > 0, mae / mad, np.nan)
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    return {
        "mae": float(mae.mean()),
        "rmse": float(rmse.mean()),
        "mad": float(mad.mean()),
        "mae_over_mad": float(np.mean(ratio)),
        "r2": float(np.mean(r2)),
    }


def per_target_metrics(
    prediction: np.ndarray, target: np.ndarray, names: list[str]
) -> dict[str, dict[str, float]]:
    """:func:`regression_metrics` of each target column, by name (targets may have different units)."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(len(target), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    return {name: regression_metrics(prediction[:, k], target[:, k]) for k, name in enumerate(names)}


def _roc_auc_binary(score: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_score = score[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_score, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC-AUC (binary, or one-vs-rest macro average over classes present)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    n_classes = probabilities.shape[1]
    if n_classes == 2:
        auc = _roc_auc_binary(probabilities[:, 1], labels == 1)
    else:
        aucs = [_roc_auc_binary(probabilities[:, c], labels == c) for c in range(n_classes)]
        aucs = [a for a in aucs if np.isfinite(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    return {"accuracy": accuracy, "roc_auc": auc}
