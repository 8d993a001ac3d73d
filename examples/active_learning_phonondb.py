"""Active learning on real DFT data, with the table as the reference:
``verdi run examples/active_learning_phonondb.py`` (needs ``../shared/data``; a fresh ``verdi presto``
profile is enough; tens of CPU minutes with the defaults).
``verdi run examples/active_learning_phonondb.py -- --pool-size 60 --rounds 1 --epochs 5`` is a quick look.

The pool is (a random part of) the phonondb training part of the ``phonons-300K`` recipe's fixed split,
the validation set its calibration part, as in ``benchmarks/active_learning.py``; the reference is
``cgcnn.table_reference``, which reads each selected crystal's U and Cv at 300 K from
``phonondb-300K.jsonl.gz`` (found by its mp id, checked by structure matching), so no DFT runs. The
loop stops when the validation Cv MAE/MAD reaches ``--target`` per cell (and ``--target-per-atom``
per atom) or the budget is spent; the learning curve and its plot go to ``--output-dir``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.pretrained.build import fixed_split
from aiida_cgcnn.pretrained.recipes import recipe
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.public_data import shared_data_dir
from aiida_cgcnn.workflows.active_learning import ActiveLearningWorkChain
from aiida_cgcnn.workflows.demo import get_or_create_code


def pool_and_validation(pool_size: int | None, validation_size: int | None, seed: int = 0):
    """The pool as ``StructureData`` labelled by mp id, and the validation set (U and Cv) as a node."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the real data in ../shared/data (or $AIIDA_CGCNN_DATA)")
    spec = recipe("phonons-300K")
    dataset, _, _ = spec.read(data)
    split = fixed_split(dataset, spec)
    rng = np.random.default_rng(seed)
    pool_index, validation_index = split["pool"], split["calibration"]
    if pool_size is not None and pool_size < len(pool_index):
        pool_index = np.sort(rng.choice(pool_index, pool_size, replace=False))
    if validation_size is not None and validation_size < len(validation_index):
        validation_index = np.sort(rng.choice(validation_index, validation_size, replace=False))
    pool = {}
    for k in pool_index:
        crystal = dataset.crystal(int(k))
        node = orm.StructureData(ase=crystal.to_ase())
        node.label = crystal.id  # the table reference's hint: the mp id
        pool[crystal.id.replace("-", "_")] = node
    part = dataset.subset(validation_index)
    validation, _ = CrystalDataset.from_structures(
        list(part.crystals()),
        part.targets[:, :2],
        ids=[str(i) for i in part.ids],
        target_names=["U", "Cv"],
        units=["kJ/mol", "J/(K mol)"],
        metadata=dict(part.metadata),
    )
    node = CrystalDatasetData.from_dataset(validation)
    node.label = f"phonondb calibration part, {len(validation)} crystals"
    return pool, node.store()


def main(
    pool_size: int | None = 1000,
    validation_size: int | None = None,
    seed_size: int = 100,
    per_round: int = 100,
    rounds: int = 5,
    members: int = 3,
    epochs: int = 60,
    strategy: str = "uncertainty",
    target: float = 0.02,
    target_per_atom: float = 0.10,
    seed: int = 0,
    output_dir: str | Path = "runs/active-learning-phonondb",
    echo=print,
) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pool, validation = pool_and_validation(pool_size, validation_size)
    echo(
        f"1. phonondb: a pool of {len(pool)} crystals, CrystalDatasetData<{validation.pk}> of "
        f"{validation.size} to validate on"
    )

    echo(
        f"2. cgcnn.active_learning with cgcnn.table_reference: {seed_size} + {rounds} x {per_round} "
        f"references, {members} members, {strategy} selection ..."
    )
    code = get_or_create_code()
    builder = ActiveLearningWorkChain.get_builder()
    builder.pool = pool
    builder.validation = validation
    builder.reference_workchain = orm.Str("cgcnn.table_reference")
    builder.seed_size = orm.Int(seed_size)
    builder.per_round = orm.Int(per_round)
    builder.rounds = orm.Int(rounds)
    builder.strategy = orm.Str(strategy)
    builder.seed = orm.Int(seed)
    builder.members = orm.Int(members)
    builder.selection_target = orm.Str("Cv")
    builder.target_mae_over_mad = orm.Float(target)
    builder.target_mae_over_mad_per_atom = orm.Float(target_per_atom)
    builder.training.train.code = code
    # the phonons-300K recipe's model and loss (sum pooling, errors per atom in the loss), fewer epochs
    builder.training.train.parameters = orm.Dict(
        {
            "model": {"architecture": "cgcnn", "pooling": "sum"},
            "train": {
                "epochs": epochs,
                "batch_size": 64,
                "optimizer": "adamw",
                "lr": 0.002,
                "scheduler": "cosine",
                "loss": "l1",
                "loss_per_atom": True,
                "train_ratio": 0.85,
                "val_ratio": 0.15,
                "test_ratio": 0.0,
            },
        }
    )
    builder.training.train.metadata.options.max_wallclock_seconds = 6 * 3600
    builder.predict.code = code
    builder.predict.metadata.options.max_wallclock_seconds = 3600
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise RuntimeError(f"the active learning failed: {node.exit_status} {node.exit_message}")
    summary = results["summary"].get_dict()
    echo(f"   ActiveLearningWorkChain<{node.pk}>: {summary['stopped']}")
    if summary["failed"]:
        echo(f"   {len(summary['failed'])} references skipped, e.g. {next(iter(summary['failed'].items()))}")
    if summary["invalid"]:
        echo(f"   {len(summary['invalid'])} pool structures left out (no model takes them)")

    echo("3. Learning curve (validation Cv MAE/MAD):")
    echo(f"   {'round':>5s} {'refs':>5s} {'train':>5s} {'per cell':>9s} {'per atom':>9s}")
    for row in csv.DictReader(io.StringIO(results["learning_curve"].get_content())):
        echo(
            f"   {row['round']:>5s} {row['n_references']:>5s} {row['n_training']:>5s} "
            f"{float(row['Cv_mae_over_mad']):9.3f} {float(row['Cv_mae_over_mad_per_atom']):9.3f}"
        )
    (output_dir / "learning_curve.csv").write_text(results["learning_curve"].get_content())
    path = output_dir / "learning_curve.png"
    path.write_bytes(results["learning_curve_plot"].get_content(mode="rb"))
    echo(f"   EnsembleData<{results['ensemble'].pk}>; plot -> {path}")
    return {"workchain": node.pk, "ensemble": results["ensemble"].pk, "dataset": results["dataset"].pk}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Active learning on phonondb with the table reference.")
    parser.add_argument(
        "--pool-size", type=int, default=1000, help="A random part of the pool [1000]; 0: all."
    )
    parser.add_argument(
        "--validation-size", type=int, default=0, help="A random part of the validation set; 0: all."
    )
    parser.add_argument("--seed-size", type=int, default=None, help="Random seed batch [per-round].")
    parser.add_argument("--per-round", type=int, default=100, help="References per round [100].")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds after the seed batch [5].")
    parser.add_argument("--members", type=int, default=3, help="Ensemble members [3].")
    parser.add_argument("--epochs", type=int, default=60, help="Training epochs per member [60].")
    parser.add_argument("--strategy", default="uncertainty", choices=["uncertainty", "random", "diverse"])
    parser.add_argument("--target", type=float, default=0.02, help="Cv MAE/MAD per cell to stop at [0.02].")
    parser.add_argument("--target-per-atom", type=float, default=0.10, help="... and per atom [0.10].")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/active-learning-phonondb")
    args = parser.parse_args()
    main(
        pool_size=args.pool_size or None,
        validation_size=args.validation_size or None,
        seed_size=args.seed_size or args.per_round,
        per_round=args.per_round,
        rounds=args.rounds,
        members=args.members,
        epochs=args.epochs,
        strategy=args.strategy,
        target=args.target,
        target_per_atom=args.target_per_atom,
        seed=args.seed,
        output_dir=args.output_dir,
    )
