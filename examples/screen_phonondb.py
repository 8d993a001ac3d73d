"""Screen real crystals for the highest heat capacity per atom at 300 K and check the best with phonopy:
``verdi run examples/screen_phonondb.py`` (needs ``../shared/data``; a fresh ``verdi presto`` profile
is enough; a few CPU minutes, most of them CHGNet phonons).

1. Crystals of phonondb's 300 K table that the shipped ``phonons-300K`` ensemble never saw (the test
   part of its recipe's fixed split; ``--structures`` of them), stored as ``StructureData`` labelled
   by mp id, in a group.
2. ``cgcnn.screen``: the group in shards, one ``cgcnn.predict`` job per shard, the highest Cv per
   atom among predictions whose calibrated spread per atom is small, the best in a group.
3. Verification: the best and the most uncertain candidates go to ``cgcnn.phonon_comparison`` with
   phonopy references from CHGNet forces (a universal potential standing in for DFT), and each is
   also looked up in the table (the PBEsol phonopy value the ensemble learned to predict), so both
   the model and the stand-in are measured against DFT.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.functions.active_learning import default_table_path, load_phonon_table
from aiida_cgcnn.calculations.functions.screen import read_screening_table
from aiida_cgcnn.pretrained.build import fixed_split
from aiida_cgcnn.pretrained.recipes import recipe
from aiida_cgcnn.training.public_data import shared_data_dir
from aiida_cgcnn.workflows.demo import get_or_create_code
from aiida_cgcnn.workflows.screen import ScreenWorkChain


def unseen_crystals(n: int, seed: int) -> orm.Group:
    """``n`` crystals of the ensemble's test part as a group, made once per profile."""
    group, created = orm.Group.collection.get_or_create(f"examples/phonondb-unseen-{n}-seed{seed}")
    if not created and group.count():
        return group
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the real data in ../shared/data (or $AIIDA_CGCNN_DATA)")
    spec = recipe("phonons-300K")
    dataset, _, _ = spec.read(data)
    test = fixed_split(dataset, spec)["test"]
    chosen = np.sort(np.random.default_rng(seed).choice(test, size=min(n, len(test)), replace=False))
    nodes = []
    for k in chosen:
        crystal = dataset.crystal(int(k))
        node = orm.StructureData(ase=crystal.to_ase())
        node.label = crystal.id
        nodes.append(node.store())
    group.add_nodes(nodes)
    return group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=500, help="Unseen phonondb crystals [500].")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--verify-count", type=int, default=2, help="Best and most uncertain verified [2].")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/screen-phonondb"))
    args = parser.parse_args()

    group = unseen_crystals(args.structures, args.seed)
    builder = ScreenWorkChain.get_builder()
    builder.structure_group = orm.Str(group.label)
    builder.pretrained = orm.Str("phonons-300K")
    builder.criterion = orm.Dict(
        {"target": "Cv", "direction": "max", "per_atom": True, "max_std": 0.5, "top_k": args.top_k}
    )
    builder.code = get_or_create_code()
    builder.shard_size = orm.Int(args.shard_size)
    builder.predict.device = "cpu"
    builder.predict.metadata.options.max_wallclock_seconds = 1800
    # positions relaxed with CHGNet in the DFT cell: its forces vanish where its own minimum is
    builder.verify.reference.engine = orm.Dict(
        {
            "calculator": "chgnet.model.dynamics:CHGNetCalculator",
            "relax": {"fmax": 0.005, "steps": 300, "cell": False, "keep_symmetry": True},
        }
    )
    builder.verify.reference.phonopy = orm.Dict({"min_supercell_length_angstrom": 10.0})
    builder.verify.reference.temperatures = orm.List([300.0])
    builder.verify_count = orm.Int(args.verify_count)
    results, node = run_get_node(builder)
    summary = results["summary"].get_dict()
    print(f"cgcnn.screen<{node.pk}>: exit status {node.exit_status} {node.exit_message or ''}".rstrip())
    print(
        f"{summary['structures']} unseen phonondb crystals in {len(summary['shards'])} shards: "
        f"{summary['predicted']} predicted, {summary['invalid']} invalid, "
        f"{summary['selected']} selected into group {summary['group']['label']!r}"
    )

    table = load_phonon_table(default_table_path())
    _, units, rows = read_screening_table(results["table"])
    print(f"best by Cv per atom [{units['score']}] with the calibrated spread, and phonondb's DFT value:")
    for row in sorted((r for r in rows if r["selected"]), key=lambda r: r["rank"]):
        entry = table.rows[table.by_id[row["label"]]]
        dft = entry["Cv_JKmol"] / len(entry["species"])
        print(
            f"  {row['rank']:>2}. {row['label']:<11} {orm.load_node(row['pk']).get_formula():<10} "
            f"{row['score']:.3f} ± {row['Cv_per_atom_std']:.3f}   DFT {dft:.3f}"
        )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "screening.csv").write_bytes(results["table"].get_content(mode="rb"))

    if "verification" in results:
        comparison = results["verification"]["comparison"].get_dict()
        print("verified with CHGNet + phonopy, per primitive cell [J/(K mol)]:")
        for label, row in comparison["per_structure"].items():
            mp_id = orm.load_node(int(label.rsplit("pk", 1)[1])).label
            dft = table.rows[table.by_id[mp_id]]["Cv_JKmol"]
            print(
                f"  {label:<18} {mp_id:<11} Cv predicted {row['Cv_predicted']:7.2f}, "
                f"CHGNet {row['Cv_reference']:7.2f}, DFT {dft:7.2f}"
            )
        plot = args.output_dir / "verification-parity.png"
        with results["verification"]["parity_plot"].open(mode="rb") as source, open(plot, "wb") as target:
            shutil.copyfileobj(source, target)
        print(f"table -> {args.output_dir / 'screening.csv'}; parity plot -> {plot}")


if __name__ == "__main__":
    main()
