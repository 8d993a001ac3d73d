"""Test metrics and calibration of an ensemble, as the model cards report them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from ..training.dataset import CrystalDataset
from ..training.metrics import regression_metrics

__all__ = ["calibration_stats", "evaluate_ensemble", "fit_scale"]

ONE_SIGMA = 0.6826894921370859  # fraction of a normal distribution within one standard deviation


def fit_scale(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per target, the factor s such that |error| <= s·σ for 68.27 % of the structures (the
    empirical one-sigma quantile of |error|/σ)."""
    ratio = np.abs(mean - target) / np.maximum(std, 1e-12)
    return np.quantile(ratio, ONE_SIGMA, axis=0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def calibration_stats(error: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Coverage of |error| by 1σ and 2σ (ideal 0.683 and 0.954) and the rank correlation of |error| with σ."""
    error, std = np.abs(error), np.maximum(std, 1e-12)
    return {
        "coverage_1sigma": float(np.mean(error <= std)),
        "coverage_2sigma": float(np.mean(error <= 2 * std)),
        "spearman_error_std": _spearman(error, std),
    }


def _by_element(dataset: CrystalDataset, error: np.ndarray, minimum: int = 10) -> dict[str, dict[str, Any]]:
    from pymatgen.core.periodic_table import Element

    out = {}
    for z in np.unique(dataset.numbers):
        rows = [k for k in range(len(dataset)) if z in dataset.crystal(k).numbers]
        if len(rows) >= minimum:
            out[Element.from_Z(int(z)).symbol] = {"n": len(rows), "mae": float(np.mean(np.abs(error[rows])))}
    return out


def _by_size(num_atoms: np.ndarray, error: np.ndarray) -> list[dict[str, Any]]:
    edges = [1, 5, 9, 17, 33, 65, 10**6]
    out = []
    for low, high in itertools.pairwise(edges):
        rows = (num_atoms >= low) & (num_atoms < high)
        if rows.any():
            out.append(
                {
                    "atoms": f"{low}-{high - 1}" if high < 10**6 else f">={low}",
                    "n": int(rows.sum()),
                    "mae": float(np.mean(np.abs(error[rows]))),
                }
            )
    return out


def evaluate_ensemble(
    prediction, dataset: CrystalDataset, scale: np.ndarray, spec, files: list[Path]
) -> dict:
    """Per target: the ensemble's test metrics (per basis cell, and per atom for extensive targets),
    each member's MAE, the calibration before and after scaling, errors by element and cell size."""
    index = {sid: k for k, sid in enumerate(map(str, dataset.ids))}
    rows = np.array([index[i] for i in prediction.ids])
    target = dataset.targets[rows]
    natoms = dataset.num_atoms[rows].astype(np.float64)
    out: dict[str, Any] = {"n_test": len(rows), "members": len(files), "targets": {}}
    for t, name in enumerate(prediction.target_names):
        error = prediction.mean[:, t] - target[:, t]
        entry: dict[str, Any] = dict(regression_metrics(prediction.mean[:, t], target[:, t]))
        entry["member_mae"] = [float(np.mean(np.abs(m[:, t] - target[:, t]))) for m in prediction.members]
        if name in spec.extensive:
            per_atom = regression_metrics(prediction.mean[:, t] / natoms, target[:, t] / natoms)
            entry["per_atom"] = per_atom
        entry["calibration_raw"] = calibration_stats(error, prediction.std[:, t])
        entry["calibration"] = calibration_stats(error, prediction.std[:, t] * scale[t])
        entry["std_scale"] = float(scale[t])
        entry["by_element"] = _by_element(dataset.subset(rows), error)
        entry["by_cell_size"] = _by_size(dataset.num_atoms[rows], error)
        out["targets"][name] = entry
    return out
