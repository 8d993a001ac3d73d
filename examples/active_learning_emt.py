"""Active learning of phonon U and Cv with EMT references, with provenance:
``verdi run examples/active_learning_emt.py`` (a fresh ``verdi presto`` profile is enough; several CPU
minutes). ``verdi run examples/active_learning_emt.py -- --rounds 1 --epochs 5`` is a quicker look.

1. A pool of fcc metals and L1₂ (A₃B) ordered alloys under a little strain, as primitive cells, and a
   validation set of other strains whose EMT phonons (phonopy) are computed here.
2. The ``cgcnn.active_learning`` work chain: a random seed batch of references
   (``cgcnn.phonon_reference`` with EMT forces), then each round an ensemble of CGCNNs (``cgcnn.train``)
   predicts the pool with ``cgcnn.predict``, the most uncertain structures (``--strategy``) get their
   references, the dataset grows and the ensemble is retrained; the validation error is recorded
   after every round.
3. The learning curve is printed and written, with its plot, to ``--output-dir``
   (``runs/active-learning`` by default).

``benchmarks/active_learning.py`` runs the same loop on phonondb's DFT data (the table reference).
"""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_cgcnn.calculations.functions import dataset_from_structures
from aiida_cgcnn.phonons import PhononSettings, calculate_phonons
from aiida_cgcnn.workflows.active_learning import ActiveLearningWorkChain
from aiida_cgcnn.workflows.demo import get_or_create_code

#: EMT's own fcc lattice constants (Å), near its energy minima
LATTICE = {"Al": 4.05, "Ni": 3.52, "Cu": 3.59, "Pd": 3.94, "Ag": 4.09, "Pt": 3.94, "Au": 4.08}
#: Small and quick: 2x2x2 supercells of the primitive cells, a 10 Å mesh (enough for a demonstration)
PHONOPY = {"supercell_matrix": [2, 2, 2], "mesh": 10.0}


def crystal(name: str, strain: float):
    """``Cu`` (fcc metal, one atom) or ``Ni3Al`` (L1₂, four atoms) at a Vegard lattice constant."""
    if name in LATTICE:
        return bulk(name, "fcc", a=LATTICE[name] * (1 + strain))
    a, b = name[0:2], name[3:5]
    cell = bulk(a, "fcc", a=(3 * LATTICE[a] + LATTICE[b]) / 4 * (1 + strain), cubic=True)
    cell.symbols[0] = b  # L1₂: B on the cube corner, A on the faces
    return cell


def names() -> list[str]:
    return [*LATTICE, *(f"{a}3{b}" for a, b in itertools.permutations(LATTICE, 2))]


def pool(strains=(-0.02, 0.0, 0.02)) -> dict[str, orm.StructureData]:
    """Every metal and alloy at each strain, labelled ``Ni3Al_m2`` (-2 %), ``Ni3Al_p0``, ..."""
    out = {}
    for name, strain in itertools.product(names(), strains):
        tag = f"{'m' if strain < 0 else 'p'}{abs(strain) * 100:.0f}"
        out[f"{name}_{tag}"] = orm.StructureData(ase=crystal(name, strain))
    return out


def validation(n: int = 12, strain: float = 0.01) -> orm.Data:
    """``n`` crystals at a strain the pool does not have, with their EMT U and Cv at 300 K."""
    settings = PhononSettings.from_dict(PHONOPY)
    cells, values = [], []
    for name in names()[:: max(1, len(names()) // n)][:n]:
        record = calculate_phonons(crystal(name, strain), EMT(), [300.0], settings, name=name)
        if record.properties.stable:
            cells.append(orm.StructureData(ase=record.to_atoms()).store())
            values.append(
                [record.properties.internal_energy_kjmol[0], record.properties.heat_capacity_jkmol[0]]
            )
    return dataset_from_structures(cells, values, ["U", "Cv"], ["kJ/mol", "J/(K mol)"])


def main(
    rounds: int = 3,
    per_round: int = 6,
    members: int = 3,
    epochs: int = 40,
    strategy: str = "uncertainty",
    output_dir: str | Path = "runs/active-learning",
    echo=print,
) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    candidates = pool()
    echo(f"1. A pool of {len(candidates)} crystals; EMT phonons of a validation set ...")
    validation_set = validation()
    echo(f"   CrystalDatasetData<{validation_set.pk}>: {validation_set.size} validation crystals")

    echo(
        f"2. cgcnn.active_learning: {rounds} rounds of {per_round} references, {members} members, "
        f"{strategy} selection ..."
    )
    code = get_or_create_code()
    builder = ActiveLearningWorkChain.get_builder()
    builder.pool = candidates
    builder.validation = validation_set
    builder.reference_workchain = orm.Str("cgcnn.phonon_reference")
    builder.reference_inputs = {
        "engine": orm.Dict({"calculator": "ase.calculators.emt.EMT"}),
        "phonopy": orm.Dict(PHONOPY),
    }
    builder.seed_size = orm.Int(2 * per_round)
    builder.per_round = orm.Int(per_round)
    builder.rounds = orm.Int(rounds)
    builder.members = orm.Int(members)
    builder.strategy = orm.Str(strategy)
    builder.training.train.code = code
    builder.training.train.parameters = orm.Dict(
        {
            "model": {"pooling": "sum", "atom_fea_len": 32, "n_conv": 2, "h_fea_len": 64},
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": 0.003,
                "train_ratio": 0.8,
                "val_ratio": 0.2,
                "test_ratio": 0.0,
            },
        }
    )
    builder.training.train.metadata.options.max_wallclock_seconds = 3600
    builder.predict.code = code
    builder.predict.metadata.options.max_wallclock_seconds = 3600
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise RuntimeError(f"the active learning failed: {node.exit_status} {node.exit_message}")
    summary = results["summary"].get_dict()
    echo(f"   ActiveLearningWorkChain<{node.pk}>: {summary['stopped']}")
    for label, reason in summary["failed"].items():
        echo(f"   reference skipped {label}: {reason}")

    echo("3. Learning curve (validation, per mole of primitive cells and per atom):")
    echo(
        f"   {'round':>5s} {'refs':>5s} {'train':>5s} {'U MAE/MAD':>10s} {'Cv MAE/MAD':>10s} "
        f"{'Cv per atom':>11s}"
    )
    for row in csv.DictReader(io.StringIO(results["learning_curve"].get_content())):
        echo(
            f"   {row['round']:>5s} {row['n_references']:>5s} {row['n_training']:>5s} "
            f"{float(row['U_mae_over_mad']):10.3f} {float(row['Cv_mae_over_mad']):10.3f} "
            f"{float(row['Cv_mae_over_mad_per_atom']):11.3f}"
        )
    (output_dir / "learning_curve.csv").write_text(results["learning_curve"].get_content())
    path = output_dir / "learning_curve.png"
    path.write_bytes(results["learning_curve_plot"].get_content(mode="rb"))
    echo(
        f"   EnsembleData<{results['ensemble'].pk}>, CrystalDatasetData<{results['dataset'].pk}> "
        f"({results['dataset'].size} crystals); plot -> {path}"
    )
    return {"workchain": node.pk, "ensemble": results["ensemble"].pk, "dataset": results["dataset"].pk}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Active learning of U and Cv with EMT phonon references.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds after the seed batch [3].")
    parser.add_argument("--per-round", type=int, default=6, help="References per round [6].")
    parser.add_argument("--members", type=int, default=3, help="Ensemble members [3].")
    parser.add_argument("--epochs", type=int, default=40, help="Training epochs per member [40].")
    parser.add_argument("--strategy", default="uncertainty", choices=["uncertainty", "random", "diverse"])
    parser.add_argument("--output-dir", default="runs/active-learning", help="[runs/active-learning]")
    args = parser.parse_args()
    main(args.rounds, args.per_round, args.members, args.epochs, args.strategy, args.output_dir)
