"""Feature importance of a hybrid model (the paper's Fig. 4).

Permutation importance through a deep network is expensive, so, as the paper does, the vector the
output network sees, [learned crystal vector ⊕ standardised descriptors], is extracted for every
structure and a random forest fitted on it: its impurity importances say how much each learned
component and each descriptor carries, and their sum over the descriptors is the descriptors' share.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, DatasetError
from ..graph.batch import build_graph_store
from ..models.heads import scatter_mean, scatter_sum
from ..training.dataset import CrystalDataset
from ..training.metrics import regression_metrics

__all__ = ["ImportanceResult", "crystal_representations", "hybrid_feature_importance", "plot_importance"]


@dataclass
class ImportanceResult:
    """Importances per target over ``feature_names`` (learned ``h0``, ``h1``, ... then descriptor columns)."""

    feature_names: list[str]
    is_descriptor: np.ndarray
    importances: dict[str, np.ndarray]
    descriptor_share: dict[str, float]
    forest_test_metrics: dict[str, dict[str, float]]


@torch.no_grad()
def crystal_representations(
    predictor, dataset: CrystalDataset, workers: int | None = None, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The learned crystal vectors and the standardised extra features the head combines.

    For ``mean`` and ``sum-vector`` pooling the learned vector is exactly the pooled vector the
    output network sees; for per-atom heads (``sum``, ``site``) it is the mean of the atom vectors
    (after the head's input activation), the crystal-level summary of what the network concatenates
    to the descriptors atom by atom.

    Returns
    -------
    learned, extra, extra_names
        Arrays of shape (N, h) and (N, F), in the dataset's order.
    """
    from .hybrid import model_inputs, stored_columns

    model, head = predictor.model, predictor.model.head
    crystals = list(dataset.crystals())
    features = None
    if predictor.feature_names:
        features, _, failures = model_inputs(
            predictor.descriptors,
            predictor.feature_names,
            crystals,
            dataset.features,
            stored_columns(dataset, predictor.descriptors) if dataset.features is not None else None,
            workers,
        )
        if failures:
            raise DatasetError(f"descriptors fail for {failures[0][1]}")
    store, failures = build_graph_store(crystals, predictor.graph_settings, workers=workers)
    if failures:
        raise DatasetError(f"graphs fail for {failures[0][1]}")
    learned, extra = [], []
    for batch in store.iter_batches(np.arange(len(store)), batch_size, features=features):
        batch = batch.to(predictor.device)
        atoms = model.atom_vectors(batch)
        if head.pooling == "sum-vector":
            pooled = scatter_sum(atoms, batch.crystal_index, batch.num_crystals)
        else:
            pooled = scatter_mean(atoms, batch.crystal_index, batch.num_crystals, batch.num_atoms)
        learned.append(head.activation_in(pooled).cpu())
        if batch.features is not None and head.extra_features:
            extra.append(((batch.features - head.extra_mean) / head.extra_std).cpu())
    learned_array = torch.cat(learned).double().numpy()
    extra_array = torch.cat(extra).double().numpy() if extra else np.zeros((len(learned_array), 0))
    return learned_array, extra_array, list(predictor.feature_names) if extra else []


def hybrid_feature_importance(
    checkpoint: str | os.PathLike,
    dataset: CrystalDataset,
    output_dir: str | os.PathLike | None = None,
    n_estimators: int = 300,
    seed: int = 0,
    workers: int | None = None,
    n_jobs: int | None = 1,
) -> ImportanceResult:
    """Random-forest importance over [learned crystal vector ⊕ descriptors] of a trained hybrid model.

    The forest is fitted on the checkpoint's training split (so ``dataset`` must be the dataset the
    model was trained on) and checked on its test split.
    """
    from sklearn.ensemble import RandomForestRegressor

    from ..predict import Predictor
    from .baseline import split_from_checkpoint

    predictor = Predictor.from_checkpoint(checkpoint)
    if predictor.task != "regression":
        raise CheckpointError(
            f"{str(checkpoint)!r} is a {predictor.task} model; feature importance is for regression models"
        )
    split = split_from_checkpoint(checkpoint, dataset)
    learned, extra, extra_names = crystal_representations(predictor, dataset, workers)
    x = np.concatenate([learned, extra], axis=1)
    names = [f"h{k}" for k in range(learned.shape[1])] + extra_names
    is_descriptor = np.array([False] * learned.shape[1] + [True] * len(extra_names))
    importances, shares, checks = {}, {}, {}
    for j, target in enumerate(predictor.target_names):
        y = dataset.targets[:, j]
        forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
        forest.fit(x[split["train"]], y[split["train"]])
        importances[target] = forest.feature_importances_
        shares[target] = float(forest.feature_importances_[is_descriptor].sum())
        if len(split["test"]):
            checks[target] = regression_metrics(forest.predict(x[split["test"]]), y[split["test"]])
    result = ImportanceResult(names, is_descriptor, importances, shares, checks)
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "importance.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["feature", "kind", *predictor.target_names])
            for k, name in enumerate(names):
                writer.writerow(
                    [
                        name,
                        "descriptor" if is_descriptor[k] else "learned",
                        *[f"{importances[t][k]:.6g}" for t in predictor.target_names],
                    ]
                )
        summary: dict[str, Any] = {
            "descriptor_share": shares,
            "forest_test_metrics": checks,
            "n_estimators": n_estimators,
            "learned_size": int(learned.shape[1]),
            "descriptor_columns": extra_names,
        }
        (output_dir / "importance.json").write_text(json.dumps(summary, indent=2, default=float))
        plot_importance(result, output_dir / "importance.png")
    return result


def plot_importance(result: ImportanceResult, path: str | os.PathLike, top: int = 30) -> Path | None:
    """Bar plot of the largest importances per target, descriptors highlighted; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    targets = list(result.importances)
    fig, axes = plt.subplots(len(targets), 1, figsize=(9, 3.2 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets, strict=True):
        values = result.importances[target]
        order = np.argsort(values)[::-1][:top]
        colours = ["tab:orange" if result.is_descriptor[k] else "tab:blue" for k in order]
        ax.bar(range(len(order)), values[order], color=colours)
        ax.set_xticks(range(len(order)), [result.feature_names[k] for k in order], rotation=90, fontsize=7)
        ax.set_ylabel("importance")
        ax.set_title(
            f"{target}: descriptors carry {result.descriptor_share[target]:.0%} "
            "(orange: descriptors, blue: learned)",
            fontsize=9,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
