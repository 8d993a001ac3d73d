"""Build a pretrained ensemble from its recipe: split, members, test metrics, calibration, card.

One fixed split per model (``split_indices`` with the recipe's seed): a test part that no member
ever sees, a calibration part on which the spread's scale is fitted, and a pool from which every
member draws its own training and validation parts with its own seed. The members are ordinary
``Trainer`` runs, so each is resumable and its checkpoint self-contained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..graph.crystal_graph import GraphSettings
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.dataset import CrystalDataset
from ..training.trainer import Trainer, split_indices
from .recipes import Recipe, recipe
from .registry import sha256_file

__all__ = ["build", "fixed_split", "sha256_file", "train_member", "write_card"]


def fixed_split(dataset: CrystalDataset, spec: Recipe) -> dict[str, np.ndarray]:
    """``pool`` (members train and validate on it), ``calibration`` and ``test``: indices into ``dataset``.

    The test part equals that of a 60/20/20 ``split_indices`` with the same seed, so it is the test
    part of the single-model benchmarks on the same data.
    """
    s = spec.split
    parts = split_indices(
        len(dataset), 1.0 - s["test"] - s["calibration"], s["calibration"], s["test"], s["seed"]
    )
    return {"pool": parts["train"], "calibration": parts["val"], "test": parts["test"]}


def _member_config(spec: Recipe, member: int, epochs: int | None) -> dict[str, Any]:
    pool_share = 1.0 - spec.split["test"] - spec.split["calibration"]
    val = spec.split["val"] / pool_share
    config = dict(spec.train, seed=member, train_ratio=1.0 - val, val_ratio=val, test_ratio=0.0)
    if epochs is not None:
        config["epochs"] = epochs
    return config


def train_member(
    spec: Recipe,
    pool: CrystalDataset,
    member: int,
    work_dir: Path,
    epochs: int | None = None,
    device: str = "cpu",
) -> Path:
    """Train member ``member`` (its seed) on ``pool``; returns its best checkpoint (reused if done)."""
    run_dir = work_dir / f"member-{member}"
    if (run_dir / "metrics.json").is_file():
        return run_dir / "best.pt"
    resume = run_dir / "last.pt" if (run_dir / "last.pt").is_file() else None
    Trainer(
        pool,
        run_dir,
        model_config=dict(spec.model),
        train_config=_member_config(spec, member, epochs),
        graph_settings=GraphSettings(),
        cache_dir=work_dir / "graphs",
        device=device,
        progress=False,
        resume=resume,
    ).fit()
    return run_dir / "best.pt"


def _ship(best: Path, destination: Path) -> None:
    """The member's checkpoint without what only a resume needs; weights-only as every checkpoint."""
    state = load_checkpoint(best)
    keep = {
        k: v for k, v in state.items() if k not in ("format", "format_version", "package_version", "created")
    }
    keep["history"] = [
        {k: v for k, v in record.items() if k in ("epoch", "train_loss", "val_mae", "val_mae_over_mad")}
        for record in keep.get("history", [])
    ]
    save_checkpoint(destination, keep)


def build(
    name: str,
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    members: list[int] | None = None,
    epochs: int | None = None,
    device: str = "cpu",
    finalize: bool = True,
    echo=print,
) -> Path | None:
    """Build model ``name`` into ``output_dir`` (its member checkpoints and ``card.json``).

    ``members`` trains only these members (e.g. one per process); ``finalize`` then evaluates the
    ensemble of every member found and writes the card. Runs under ``work_dir`` are resumed.
    """
    spec = recipe(name)
    data_dir, output_dir, work_dir = Path(data_dir), Path(output_dir), Path(work_dir)
    dataset, skipped, source = spec.read(data_dir)
    split = fixed_split(dataset, spec)
    pool = dataset.subset(split["pool"])
    work_dir.mkdir(parents=True, exist_ok=True)
    for member in range(spec.members) if members is None else members:
        start = time.monotonic()
        best = train_member(spec, pool, member, work_dir, epochs, device)
        echo(f"{name}: member {member} trained ({time.monotonic() - start:.0f} s) -> {best}")
    if not finalize:
        return None
    runs = sorted(work_dir.glob("member-*/metrics.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not runs:
        raise FileNotFoundError(f"no trained member under {work_dir}")
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("member-*.pt"):
        old.unlink()
    files = []
    for run in runs:
        destination = output_dir / f"{run.parent.name}.pt"
        _ship(run.parent / "best.pt", destination)
        files.append(destination)
    if epochs is not None:  # the card states the recipe the members were really trained with
        spec = dataclasses.replace(spec, train=dict(spec.train, epochs=epochs))
    card = write_card(spec, dataset, skipped, source, split, files, output_dir, echo=echo)
    echo(f"{name}: card -> {card}")
    return card


def _domain(pool: CrystalDataset) -> dict[str, Any]:
    return {
        "elements": pool.elements(),
        "num_atoms": [int(pool.num_atoms.min()), int(pool.num_atoms.max())],
    }


def write_card(
    spec: Recipe,
    dataset: CrystalDataset,
    skipped,
    source: Path,
    split: dict[str, np.ndarray],
    files: list[Path],
    output_dir: Path,
    echo=print,
) -> Path:
    """Evaluate the ensemble on the calibration and test parts, fit the spread's scale, write the card."""
    from ..ensemble import Ensemble
    from .evaluate import evaluate_ensemble, fit_scale

    pool = dataset.subset(split["pool"])
    entry: dict[str, Any] = spec.to_dict()
    entry.update(
        {
            "targets": [
                {"name": n, "unit": u, "basis": spec.extensive.get(n, "intensive")}
                for n, u in zip(dataset.target_names, dataset.units, strict=True)
            ],
            "files": [{"path": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files],
            "data": {
                **{k: v for k, v in spec.source.items() if k not in ("reader",)},
                "sha256": sha256_file(source),
                "dataset_sha256": dataset.sha256(),
                "structures": len(dataset),
                "left_out": len(skipped),
                "left_out_reasons": _reason_counts(skipped),
            },
            "split_counts": {
                "pool": len(split["pool"]),
                "calibration": len(split["calibration"]),
                "test": len(split["test"]),
                "member_train": round(len(split["pool"]) * (1 - _member_config(spec, 0, None)["val_ratio"])),
            },
            "test_ids": [str(i) for i in dataset.ids[split["test"]]],
            "domain": _domain(pool),
            "members": len(files),
            "package_version": __version__,
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "std_scale": [1.0] * len(dataset.target_names),
        }
    )
    ensemble = Ensemble.from_files(files, entry)
    calibration_set, test_set = dataset.subset(split["calibration"]), dataset.subset(split["test"])
    # values per the data's own cells: spglib's tolerance finds a few pseudo-symmetric data cells
    # reducible that the data (phonopy, 1e-5 Å) kept whole
    calibration = ensemble.predict(calibration_set, calibrated=False, warn=False)
    calibration = calibration.for_cells(calibration_set.num_atoms)
    scale = fit_scale(calibration.mean, calibration.std, calibration_set.targets)
    entry["std_scale"] = [float(s) for s in scale]
    test = Ensemble.from_files(files, entry).predict(test_set, calibrated=False, warn=False)
    entry["reduced_test_cells"] = int(np.sum(test.basis_atoms != test_set.num_atoms))
    test = test.for_cells(test_set.num_atoms)
    entry["metrics"] = evaluate_ensemble(test, test_set, scale, spec, files)
    (output_dir / "card.json").write_text(json.dumps(entry, indent=1))
    np.savez_compressed(
        output_dir / "test_predictions.npz",
        ids=np.array(test.ids),
        mean=test.mean,
        std=test.std,
        target=test_set.targets,
        num_atoms=test_set.num_atoms,
    )
    return output_dir / "card.json"


def _reason_counts(skipped) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in skipped:
        key = item.reason.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def install(output_dir: Path, name: str) -> Path:
    """Copy a built model into the package's model folder (what a release ships)."""
    from .registry import MODELS_DIR

    destination = MODELS_DIR / name
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for path in [
        *sorted(output_dir.glob("member-*.pt")),
        output_dir / "card.json",
        output_dir / "test_predictions.npz",
    ]:
        shutil.copyfile(path, destination / path.name)  # package data: readable by all, not 0600
    return destination
