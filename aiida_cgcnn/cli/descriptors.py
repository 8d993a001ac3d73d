"""Commands of the descriptor-hybridization work: ``descriptors``, ``baseline``, ``probe``, ``importance``."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import click

from .common import checked, guarded, write_skipped, write_status

__all__ = ["baseline", "descriptors", "importance", "probe"]

_NAMES_HELP = (
    "'all' (the paper's 28), 'local', 'global', or comma-separated names, e.g. "
    "'density,vpa,a,b,c'; space_group_num only when named."
)


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset file (.npz) with the descriptors as its features.",
)
@click.option("--names", default="all", show_default=True, help=_NAMES_HELP + " 'none': only --features.")
@click.option(
    "--features",
    "feature_csv",
    type=click.Path(exists=True, path_type=Path),
    help="CSV of your own per-structure features ('id,<name>,...'), appended after the descriptors.",
)
@click.option(
    "--table",
    type=click.Path(path_type=Path),
    help="Also write the raw descriptor values (crys_sys as 1-7) to this CSV, one row per structure.",
)
@click.option(
    "--face-tol",
    type=float,
    default=0.0,
    show_default=True,
    help="Voronoi faces with a solid angle at most this fraction of the cell's largest are no "
    "neighbours (0: matminer's VoronoiNN default).",
)
@click.option("--workers", type=int, help="Processes [cores, at most 8].")
@click.option(
    "--skip-invalid", is_flag=True, help="Leave out structures whose descriptors fail, and list them."
)
@guarded("output")
def descriptors(
    data: Path,
    output: Path,
    names: str,
    feature_csv: Path | None,
    table: Path | None,
    face_tol: float,
    workers: int | None,
    skip_invalid: bool,
) -> None:
    """Compute the hybridization paper's descriptors for DATA (a dataset file or a CGCNN-style
    directory), in parallel, and store them with the dataset in OUTPUT."""
    from ..descriptors.definitions import CRYSTAL_SYSTEMS, DescriptorSettings, resolve_names
    from ..descriptors.hybrid import (
        attach_descriptors,
        attach_features,
        drop_features,
        read_feature_csv,
    )
    from ..training.dataset import load_dataset

    if names.strip().lower() != "none":
        checked("--names", resolve_names, names)
    dataset_, skipped = load_dataset(data, skip_invalid=skip_invalid, require_targets=False)
    if names.strip().lower() == "none":
        dataset_ = drop_features(dataset_)
    else:
        settings = DescriptorSettings(face_tol=face_tol)
        dataset_, more = attach_descriptors(dataset_, names, settings, workers, skip_invalid)
        skipped += more
    if feature_csv is not None:
        dataset_ = attach_features(dataset_, *read_feature_csv(feature_csv))
    dataset_.save(output)
    if table is not None and dataset_.features is not None:
        record = dataset_.metadata.get("descriptors", {})
        columns = dataset_.feature_names
        with open(table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *record.get("names", [])])
            for k, sid in enumerate(dataset_.ids):
                row: list[int | str] = []
                for name in record.get("names", []):
                    if name == "crys_sys":
                        one_hot = [
                            dataset_.features[k, columns.index(f"crys_sys={s}")] for s in CRYSTAL_SYSTEMS
                        ]
                        row.append(int(max(range(7), key=one_hot.__getitem__)) + 1)
                    else:
                        row.append(repr(float(dataset_.features[k, columns.index(name)])))
                writer.writerow([sid, *row])
    if skipped:
        write_skipped(output.with_suffix(".skipped.txt"), skipped)
        click.echo(f"Skipped {len(skipped)} structure(s): see {output.with_suffix('.skipped.txt')}")
    write_status(
        output.parent,
        "completed",
        f"descriptors of {len(dataset_)} structures",
        skipped=[asdict(s) for s in skipped],
    )
    click.echo(
        f"Wrote {len(dataset_)} structures with {len(dataset_.feature_names)} feature columns to {output}"
    )


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), default=Path("baseline"), show_default=True
)
@click.option("--descriptors", "names", default="all", show_default=True, help=_NAMES_HELP)
@click.option(
    "--split-from",
    type=click.Path(exists=True, path_type=Path),
    help="Use the split stored in this checkpoint (a GNN trained on the same dataset file).",
)
@click.option(
    "--split",
    type=(float, float, float),
    default=(0.6, 0.2, 0.2),
    show_default=True,
    help="Train/val/test ratios, as for train.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Split and forest seed.")
@click.option("--n-estimators", type=int, default=500, show_default=True)
@click.option("--jobs", type=int, default=1, show_default=True, help="Processes for the forest.")
@click.option("--workers", type=int, help="Processes for descriptors not stored in DATA.")
@guarded("output_dir")
def baseline(
    data: Path,
    output_dir: Path,
    names: str,
    split_from: Path | None,
    split,
    seed: int,
    n_estimators: int,
    jobs: int,
    workers: int | None,
) -> None:
    """The descriptors-only baseline: a random forest on the descriptors of DATA, same split and
    metrics as train (metrics.json, test_predictions.csv in OUTPUT_DIR)."""
    from ..descriptors.baseline import random_forest_baseline, split_from_checkpoint
    from ..descriptors.definitions import resolve_names
    from ..descriptors.hybrid import attach_descriptors
    from ..training.dataset import load_dataset

    checked("--descriptors", resolve_names, names)
    dataset_, _ = load_dataset(data)
    dataset_, skipped = attach_descriptors(dataset_, names, workers=workers)
    split_ = split_from_checkpoint(split_from, dataset_) if split_from else None
    result = random_forest_baseline(
        dataset_,
        split_,
        train_ratio=split[0],
        val_ratio=split[1],
        test_ratio=split[2],
        seed=seed,
        n_estimators=n_estimators,
        n_jobs=jobs,
        output_dir=output_dir,
    )
    write_status(output_dir, "completed", "random forest fitted", skipped=[asdict(s) for s in skipped])
    test = result.metrics.get("test", {})
    for target, metrics in test.get("per_target", {"": test}).items():
        click.echo(
            f"test {target}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        )


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("probe"), show_default=True)
@click.option("--descriptors", "names", default="all", show_default=True, help=_NAMES_HELP)
@click.option(
    "--mode",
    type=click.Choice(["joint", "separate"]),
    default="joint",
    show_default=True,
    help="One GNN for all numeric descriptors, or one per descriptor (as the paper).",
)
@click.option(
    "--pooling", type=click.Choice(["mean", "sum", "site", "sum-vector"]), default="mean", show_default=True
)
@click.option("--epochs", type=int, default=100, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--split",
    type=(float, float, float),
    default=(0.8, 0.1, 0.1),
    show_default=True,
    help="Train/val/test ratios (the paper's probe used 80/10/10).",
)
@click.option("--limit", type=int, help="Use only the first LIMIT structures of DATA.")
@click.option("--workers", type=int, help="Processes for descriptors and graphs.")
@click.option("--device", default="auto", show_default=True)
@guarded("output_dir")
def probe(
    data: Path,
    output_dir: Path,
    names: str,
    mode: str,
    pooling: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    split,
    limit: int | None,
    workers: int | None,
    device: str,
) -> None:
    """Learnability probe: train a plain GNN to predict each descriptor of DATA and report the test R²
    per descriptor (probe.csv, probe.json, probe.png in OUTPUT_DIR)."""
    import numpy as np

    from ..descriptors.definitions import resolve_names
    from ..descriptors.probe import learnability_probe
    from ..training.dataset import load_dataset

    checked("--descriptors", resolve_names, names)
    dataset_, _ = load_dataset(data, require_targets=False)
    if limit is not None:
        dataset_ = dataset_.subset(np.arange(min(limit, len(dataset_))))
    train = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        **dict(zip(("train_ratio", "val_ratio", "test_ratio"), split, strict=True)),
    }
    result = learnability_probe(
        dataset_,
        output_dir,
        names,
        mode,
        model_config={"pooling": pooling},
        train_config=train,
        workers=workers,
        device=device,
    )
    write_status(output_dir, "completed", f"probed {len(result.rows)} descriptors")
    for row in result.rows:
        click.echo(f"{row['descriptor']:24s} {row['kind']:6s} R2 {row['r2']:7.3f}")
    if result.crys_sys_accuracy is not None:
        click.echo(f"{'crys_sys':24s} global accuracy {result.crys_sys_accuracy:.3f}")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o", "--output-dir", type=click.Path(path_type=Path), default=Path("importance"), show_default=True
)
@click.option("--n-estimators", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=int, default=1, show_default=True, help="Processes for the forest.")
@click.option("--workers", type=int)
@guarded("output_dir")
def importance(
    checkpoint: Path,
    data: Path,
    output_dir: Path,
    n_estimators: int,
    seed: int,
    jobs: int,
    workers: int | None,
) -> None:
    """Feature importance of a hybrid model: a random forest on [learned crystal vector ⊕ descriptors]
    of CHECKPOINT for DATA (the dataset it was trained on); importance.csv/json/png in OUTPUT_DIR."""
    from ..descriptors.importance import hybrid_feature_importance
    from ..training.dataset import load_dataset

    dataset_, _ = load_dataset(data)
    result = hybrid_feature_importance(checkpoint, dataset_, output_dir, n_estimators, seed, workers, jobs)
    write_status(output_dir, "completed", "feature importance computed")
    for target, share in result.descriptor_share.items():
        click.echo(f"{target}: descriptors carry {share:.1%} of the importance")
