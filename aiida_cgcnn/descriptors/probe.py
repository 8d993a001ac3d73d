"""Learnability probe (the paper's Fig. 2): can a GNN predict the human-designed descriptors?

A plain GNN (no descriptor inputs) learns the descriptors from the crystal graph alone; the R² on
the test split says how much of each descriptor the graph representation captures. Numeric
descriptors are regression targets; the crystal system is a 7-class classification (accuracy).

By default one GNN learns all numeric descriptors at once (``mode="joint"``: each standardised,
equal weight in the loss), which costs one training instead of 27; ``mode="separate"`` trains one
GNN per descriptor, as the paper did.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..training.dataset import CrystalDataset
from ..training.metrics import regression_metrics
from .definitions import CRYSTAL_SYSTEMS, DescriptorSettings, descriptor
from .hybrid import descriptor_values, drop_features

__all__ = ["ProbeResult", "learnability_probe", "plot_probe"]


@dataclass
class ProbeResult:
    """R² (and MAE) per descriptor on the test split; crystal-system accuracy if probed."""

    rows: list[dict[str, Any]]
    crys_sys_accuracy: float | None = None
    runs: dict[str, str] = field(default_factory=dict)

    def r2(self) -> dict[str, float]:
        return {row["descriptor"]: row["r2"] for row in self.rows}


def _descriptor_dataset(base: CrystalDataset, values: np.ndarray, names: list[str]) -> CrystalDataset:
    data = drop_features(base)
    data.targets = np.asarray(values, dtype=np.float64).reshape(len(data), len(names))
    data.target_names = list(names)
    data.units = [descriptor(n).unit for n in names]
    data.task = "regression"
    data.classes = []
    return data


def _test_columns(run_dir: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with open(run_dir / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    true = np.array([[float(r[f"{n}_true"]) for n in names] for r in rows])
    pred = np.array([[float(r[f"{n}_pred"]) for n in names] for r in rows])
    return true, pred


def learnability_probe(
    dataset: CrystalDataset,
    output_dir: str | os.PathLike,
    names: str | list[str] | None = "all",
    mode: str = "joint",
    model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    settings: DescriptorSettings | None = None,
    workers: int | None = None,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Train plain GNNs to predict descriptors and report the test R² of each.

    Parameters
    ----------
    dataset
        Structures (targets ignored); descriptors stored with it are reused.
    output_dir
        Runs go to ``output_dir/<run>``; the table to ``probe.csv`` and ``probe.json``, the bar plot
        to ``probe.png``.
    mode
        ``"joint"`` (one multi-target GNN) or ``"separate"`` (one GNN per descriptor).
    model_config, train_config
        As for :class:`~aiida_cgcnn.training.trainer.Trainer`; the split defaults to the paper's
        80/10/10 for this probe.
    """
    from ..training.trainer import Trainer

    if mode not in ("joint", "separate"):
        raise ValueError(f"mode must be 'joint' or 'separate', not {mode!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    values, names, positions, failures = descriptor_values(dataset, names, settings, workers)
    if failures:
        dataset = dataset.subset(positions)
    if len(dataset) < 10:
        raise DatasetError(f"the probe needs at least 10 structures with descriptors, not {len(dataset)}")
    train = {"train_ratio": 0.8, "val_ratio": 0.1, "test_ratio": 0.1, **(train_config or {})}
    cache_dir = cache_dir if cache_dir is not None else output_dir / ".graph-cache"
    numeric = [n for n in names if n != "crys_sys"]
    rows: list[dict[str, Any]] = []
    runs: dict[str, str] = {}

    def fit(data: CrystalDataset, run: str):
        run_dir = output_dir / run
        Trainer(
            data,
            run_dir,
            model_config=model_config,
            train_config=train,
            workers=workers,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
        ).fit()
        runs[run] = str(run_dir)
        return run_dir

    groups = [numeric] if mode == "joint" else [[n] for n in numeric]
    for group in groups:
        if not group:
            continue
        columns = [names.index(n) for n in group]
        run_dir = fit(
            _descriptor_dataset(dataset, values[:, columns], group), "joint" if mode == "joint" else group[0]
        )
        true, pred = _test_columns(run_dir, group)
        for j, name in enumerate(group):
            metrics = regression_metrics(pred[:, j], true[:, j])
            rows.append(
                {
                    "descriptor": name,
                    "kind": descriptor(name).kind,
                    "r2": metrics["r2"],
                    "mae": metrics["mae"],
                    "mad": metrics["mad"],
                    "unit": descriptor(name).unit,
                }
            )
    accuracy = None
    if "crys_sys" in names:
        data = _descriptor_dataset(dataset, values[:, names.index("crys_sys")] - 1.0, ["crys_sys"])
        data.task, data.classes, data.units = "classification", list(CRYSTAL_SYSTEMS), [""]
        run_dir = fit(data, "crys_sys")
        accuracy = float(json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"])
    result = ProbeResult(rows, accuracy, runs)
    with open(output_dir / "probe.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["descriptor", "kind", "r2", "mae", "mad", "unit"])
        writer.writeheader()
        writer.writerows(rows)
    (output_dir / "probe.json").write_text(
        json.dumps(
            {
                "mode": mode,
                "structures": len(dataset),
                "skipped": [f[1] for f in failures],
                "descriptors": rows,
                "crys_sys_accuracy": accuracy,
                "runs": runs,
            },
            indent=2,
            default=float,
        )
    )
    plot_probe(result, output_dir / "probe.png")
    return result


def plot_probe(result: ProbeResult, path: str | os.PathLike) -> Path | None:
    """Horizontal bars of R² per descriptor, local and global in two colours, names readable at page
    width; None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        return None
    rows = [r for r in result.rows if r["kind"] in ("local", "global")]
    if not rows:
        return None
    colours = {"local": "tab:blue", "global": "tab:orange"}
    figure = Figure(figsize=(6.4, 0.24 * len(rows) + 1.3))
    ax = figure.subplots()
    positions = np.arange(len(rows))[::-1]  # the first descriptor on top
    r2 = [max(r["r2"], -0.2) for r in rows]  # very poor fits are clipped for readability
    ax.barh(positions, r2, color=[colours[r["kind"]] for r in rows], height=0.75)
    ax.set_yticks(positions, [r["descriptor"] for r in rows], fontsize=9)
    ax.axvline(0.8, color="grey", lw=0.8, ls="--")
    ax.set_xlim(-0.2, 1.0)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("test R² of a plain CGCNN predicting the descriptor")
    ax.legend(
        handles=[Patch(color=colours[k], label=f"{k} descriptors") for k in colours],
        loc="lower right",
        fontsize=9,
    )
    if result.crys_sys_accuracy is not None:
        ax.set_title(f"crystal system (7 classes): accuracy {result.crys_sys_accuracy:.2f}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    return Path(path)
