"""A hyperparameter search as concurrent training jobs, with provenance:
``verdi run examples/hyperparameter_search.py`` (a fresh ``verdi presto`` profile is enough; a few CPU
minutes). ``verdi run examples/hyperparameter_search.py -- --trials 12 --max-epochs 27`` searches more.

1. EMT energies of fcc/bcc alloys (as the demo's) become a ``CrystalDatasetData``.
2. ``cgcnn.hyperparameter_search`` splits off the test part, asks Optuna for each trial's parameters,
   runs every trial as a ``cgcnn.train`` restart work chain (``--max-concurrent`` jobs at a time on the
   localhost computer), stops poor trials at the rungs (successive halving) and continues the others
   from their checkpoints, then predicts the test part once with the best trial's model.
3. The trials table, the plot and the summary are printed and written to ``--output-dir``
   (``runs/search`` by default).

``aiida-cgcnn search`` runs the same search without AiiDA, in local processes (docs/search.md).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.functions import dataset_from_structures
from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.workflows.demo import get_or_create_code
from aiida_cgcnn.workflows.search import HyperparameterSearchWorkChain

#: A small space for a CPU: sizes and learning settings of the CGCNN paper's Table S1, by section
SPACE = {
    "model": {
        "n_conv": {"type": "int", "low": 1, "high": 3},
        "atom_fea_len": {"type": "categorical", "choices": [16, 32, 64]},
    },
    "train": {
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    },
}


def main(
    structures: int = 160,
    trials: int = 6,
    max_concurrent: int = 2,
    min_epochs: int = 3,
    max_epochs: int = 27,
    output_dir: str | Path = "runs/search",
    echo=print,
) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atoms, energies = emt_alloys(structures, seed=11)
    nodes = [orm.StructureData(ase=a).store() for a in atoms]
    dataset = dataset_from_structures(nodes, energies, ["emt_energy"], ["eV/atom"])
    echo(f"1. CrystalDatasetData<{dataset.pk}>: {dataset.size} alloys with EMT energies")

    echo(f"2. cgcnn.hyperparameter_search: {trials} trials, {max_concurrent} jobs at a time ...")
    code = get_or_create_code()
    builder = HyperparameterSearchWorkChain.get_builder()
    builder.dataset = dataset
    builder.space = orm.Dict(SPACE)
    builder.trials = orm.Int(trials)
    builder.max_concurrent = orm.Int(max_concurrent)
    builder.min_epochs = orm.Int(min_epochs)
    builder.max_epochs = orm.Int(max_epochs)
    builder.startup_trials = orm.Int(3)
    builder.training.train.code = code
    builder.training.train.parameters = orm.Dict({"model": {"h_fea_len": 32}, "train": {"batch_size": 16}})
    builder.training.train.metadata.options.max_wallclock_seconds = 3600
    builder.predict.code = code
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise RuntimeError(f"the search failed: {node.exit_status} {node.exit_message}")

    summary = results["summary"].get_dict()
    echo(f"3. HyperparameterSearchWorkChain<{node.pk}>: {summary['states']}")
    for row in csv.DictReader(io.StringIO(results["trials"].get_content())):
        echo(
            f"   trial {row['trial']:>2s}  n_conv {row['model.n_conv']}  atom_fea_len "
            f"{row['model.atom_fea_len']:>3s}  lr {float(row['train.lr']):.2g}  epochs {row['epochs']:>3s}  "
            f"val MAE {float(row['val_mae']):.4f}  {row['state']}"
        )
    test = summary["test"]["emt_energy"]
    echo(
        f"   best trial {summary['best']['trial']}: ModelData<{results['model'].pk}>, test MAE "
        f"{test['mae']:.4f} eV/atom (MAE/MAD {test['mae_over_mad']:.3f}) on {summary['test']['n']} "
        "held-out alloys"
    )
    (output_dir / "trials.csv").write_text(results["trials"].get_content())
    path = output_dir / "search.png"
    path.write_bytes(results["plot"].get_content(mode="rb"))
    echo(f"   plot -> {path}")
    return {"workchain": node.pk, "model": results["model"].pk, "test_mae": test["mae"]}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A hyperparameter search of CGCNN on EMT alloys.")
    parser.add_argument("--structures", type=int, default=160, help="Alloys [160].")
    parser.add_argument("--trials", type=int, default=6, help="Trials [6].")
    parser.add_argument("--max-concurrent", type=int, default=2, help="Training jobs at a time [2].")
    parser.add_argument("--min-epochs", type=int, default=3, help="Epochs of the first rung [3].")
    parser.add_argument("--max-epochs", type=int, default=27, help="Epochs of a complete trial [27].")
    parser.add_argument("--output-dir", default="runs/search", help="[runs/search]")
    args = parser.parse_args()
    main(args.structures, args.trials, args.max_concurrent, args.min_epochs, args.max_epochs, args.output_dir)
