"""The descriptors-only baseline: a random forest on the descriptors (the paper's "descriptors + RF").

Same split as the trainer (:func:`~aiida_cgcnn.training.trainer.split_indices`, or the split stored
in a GNN's checkpoint) and the same metrics, so every results table can carry this column.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..training.dataset import CrystalDataset
from ..training.metrics import classification_metrics, per_target_metrics, regression_metrics

__all__ = ["BaselineResult", "per_target_metrics", "random_forest_baseline", "split_from_checkpoint"]


@dataclass
class BaselineResult:
    """Metrics (per part and per target), test predictions and the fitted forests."""

    metrics: dict[str, Any]
    test_indices: np.ndarray
    test_predictions: np.ndarray
    models: list[Any]


def split_from_checkpoint(path: str | os.PathLike, dataset: CrystalDataset) -> dict[str, np.ndarray]:
    """The train/val/test split a GNN was trained with, checked against ``dataset``'s size."""
    from ..training.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    size = state.get("dataset", {}).get("valid_size")
    if size is not None and size != len(dataset):
        raise DatasetError(
            f"the checkpoint was trained on {size} structures, the dataset has {len(dataset)}; "
            "use the same dataset file"
        )
    return {k: np.asarray(v.numpy(), dtype=np.int64) for k, v in state["split"].items()}


def random_forest_baseline(
    dataset: CrystalDataset,
    split: dict[str, np.ndarray] | None = None,
    train_ratio: float = 0.6,
    val_ratio: float = 0.2,
    test_ratio: float = 0.2,
    seed: int = 0,
    n_estimators: int = 500,
    max_features: float | str | None = 1.0,
    n_jobs: int | None = 1,
    output_dir: str | os.PathLike | None = None,
) -> BaselineResult:
    """Fit one random forest per target on the dataset's features (the descriptors) and evaluate it.

    Parameters
    ----------
    dataset
        A dataset with ``features`` (e.g. from :func:`~aiida_cgcnn.descriptors.hybrid.attach_descriptors`).
    split
        ``{"train", "val", "test"}`` indices; by default the trainer's random split with these
        ratios and ``seed``. The forest trains on ``train`` only (no early stopping to select).
    n_estimators, max_features, n_jobs
        scikit-learn settings (``max_features=1.0``: all features at every split, the regression default).
    output_dir
        If given, ``metrics.json`` and ``test_predictions.csv`` are written there.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from ..training.trainer import split_indices

    if dataset.features is None or dataset.features.shape[1] == 0:
        raise DatasetError("the dataset has no features; compute descriptors first (aiida-cgcnn descriptors)")
    if split is None:
        split = split_indices(len(dataset), train_ratio, val_ratio, test_ratio, seed)
    x, y = dataset.features, dataset.targets
    classification = dataset.task == "classification"
    start = time.perf_counter()
    models: list[Any] = []
    parts: dict[str, dict[str, Any]] = {}
    for j in range(y.shape[1]):
        if classification:
            model = RandomForestClassifier(
                n_estimators=n_estimators,
                max_features=max_features or "sqrt",
                random_state=seed,
                n_jobs=n_jobs,
            )
            model.fit(x[split["train"]], y[split["train"], j].astype(np.int64))
        else:
            model = RandomForestRegressor(
                n_estimators=n_estimators, max_features=max_features, random_state=seed, n_jobs=n_jobs
            )
            model.fit(x[split["train"]], y[split["train"], j])
        models.append(model)

    def predict(indices: np.ndarray) -> np.ndarray:
        if classification:
            proba = models[0].predict_proba(x[indices])
            full = np.zeros((len(indices), int(y[:, 0].max()) + 1))
            full[:, models[0].classes_.astype(np.int64)] = proba
            return full
        return np.stack([m.predict(x[indices]) for m in models], axis=1)

    for part in ("train", "val", "test"):
        indices = split[part]
        if not len(indices):
            continue
        prediction = predict(indices)
        if classification:
            parts[part] = classification_metrics(prediction, y[indices, 0])
        else:
            parts[part] = regression_metrics(prediction, y[indices])
            parts[part]["per_target"] = per_target_metrics(prediction, y[indices], dataset.target_names)
    test_prediction = predict(split["test"]) if len(split["test"]) else np.zeros((0, y.shape[1]))
    metrics = {
        "model": "random forest on descriptors",
        "features": list(dataset.feature_names),
        "targets": list(dataset.target_names),
        "units": list(dataset.units),
        "num_train": len(split["train"]),
        "num_val": len(split["val"]),
        "num_test": len(split["test"]),
        "n_estimators": n_estimators,
        "max_features": max_features,
        "seed": seed,
        "wall_time_s": time.perf_counter() - start,
        **parts,
    }
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        with open(output_dir / "test_predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            names = dataset.target_names
            if classification:
                writer.writerow(["id", "target", "predicted"])
                for i, p in zip(split["test"], test_prediction, strict=True):
                    writer.writerow([dataset.ids[i], int(y[i, 0]), int(p.argmax())])
            else:
                writer.writerow(["id", *[f"{n}_true" for n in names], *[f"{n}_pred" for n in names]])
                for i, p in zip(split["test"], test_prediction, strict=True):
                    writer.writerow([dataset.ids[i], *y[i].tolist(), *p.tolist()])
    return BaselineResult(metrics, np.asarray(split["test"]), test_prediction, models)
