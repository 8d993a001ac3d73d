"""Screen a group of alloys for the highest heat capacity per atom at 300 K, with provenance:
``verdi run examples/screen_alloys.py`` (a fresh ``verdi presto`` profile is enough; a CPU minute).
``verdi run examples/screen_alloys.py -- --structures 20000 --shard-size 5000`` screens more;
``-- --verify`` also checks the best and the most uncertain candidates with EMT phonons.

1. Random binary fcc alloys of the EMT metals (4-atom cubic cells, Vegard lattice constants, a
   little strain) stored as ``StructureData`` in a group.
2. The ``cgcnn.screen`` work chain with the shipped ``phonons-300K`` ensemble: the group cut into
   shards, one ``cgcnn.predict`` job per shard, all submitted at once (on a cluster: one scheduler job
   each), one table of every structure in input order, the selected structures in a group.
3. With ``--verify``: ``cgcnn.phonon_comparison`` on the best and the most uncertain candidates,
   with EMT phonopy references (a force engine stands in for DFT here: EMT is not the PBEsol the
   ensemble learned, so the comparison shows the mechanics, not the model's accuracy).

The table is written to ``--output-dir`` (``runs/screen-alloys`` by default) as ``screening.csv``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_cgcnn.calculations.functions.screen import read_screening_table
from aiida_cgcnn.workflows.demo import get_or_create_code
from aiida_cgcnn.workflows.screen import ScreenWorkChain

#: EMT's own fcc lattice constants (Å), near its energy minima
LATTICE = {"Al": 4.05, "Ni": 3.52, "Cu": 3.59, "Pd": 3.94, "Ag": 4.09, "Pt": 3.94, "Au": 4.08}


def alloys(n: int, seed: int) -> list:
    """``n`` fcc cells of 4 atoms of two metals (A3B, AB or AB3), Vegard's lattice constant, ±2 %."""
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        a, b = rng.choice(list(LATTICE), size=2, replace=False)
        n_b = int(rng.integers(1, 4))  # an alloy: one to three of the four sites
        constant = ((4 - n_b) * LATTICE[a] + n_b * LATTICE[b]) / 4 * (1 + rng.uniform(-0.02, 0.02))
        cell = bulk(str(a), "fcc", a=constant, cubic=True)
        cell.symbols[rng.choice(4, size=n_b, replace=False)] = str(b)
        cells.append(cell)
    return cells


def structure_group(n: int, seed: int) -> orm.Group:
    """The group of the ``n`` alloys, made once per profile."""
    group, created = orm.Group.collection.get_or_create(f"examples/screen-alloys-{n}-seed{seed}")
    if created or not group.count():
        nodes = []
        for k, atoms in enumerate(alloys(n, seed)):
            node = orm.StructureData(ase=atoms)
            node.label = f"alloy-{k}"
            nodes.append(node.store())
        group.add_nodes(nodes)
    return group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verify", action="store_true", help="EMT phonons of the best and most uncertain")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/screen-alloys"))
    args = parser.parse_args()

    group = structure_group(args.structures, args.seed)
    builder = ScreenWorkChain.get_builder()
    builder.structure_group = orm.Str(group.label)
    builder.pretrained = orm.Str("phonons-300K")
    # the highest Cv per atom, among predictions whose spread per atom is at most 1 J/(K mol)
    builder.criterion = orm.Dict(
        {"target": "Cv", "direction": "max", "per_atom": True, "max_std": 1.0, "top_k": args.top_k}
    )
    builder.code = get_or_create_code()
    builder.shard_size = orm.Int(args.shard_size)
    builder.predict.device = "cpu"
    builder.predict.metadata.options.max_wallclock_seconds = 1800
    if args.verify:
        builder.verify.reference.engine = orm.Dict({"calculator": "ase.calculators.emt.EMT"})
        builder.verify.reference.phonopy = orm.Dict({"min_supercell_length_angstrom": 8.0, "mesh": 20.0})
        builder.verify.reference.temperatures = orm.List([300.0])
        builder.verify_count = orm.Int(2)
    results, node = run_get_node(builder)
    summary = results["summary"].get_dict()
    print(f"cgcnn.screen<{node.pk}>: exit status {node.exit_status} {node.exit_message or ''}".rstrip())
    print(
        f"{summary['structures']} structures in {len(summary['shards'])} shards: "
        f"{summary['predicted']} predicted, "
        f"{summary['invalid']} invalid, {summary['in_failed_shards']} in failed shards, "
        f"{summary['selected']} selected into group {summary['group']['label']!r}"
    )
    _, units, rows = read_screening_table(results["table"])
    print(f"best by Cv per atom [{units['score']}], with the ensemble's calibrated spread:")
    for row in sorted((r for r in rows if r["selected"]), key=lambda r: r["rank"]):
        cell = orm.load_node(row["pk"]).get_formula()
        print(
            f"  {row['rank']:>2}. {cell:<10} pk {row['pk']:<7} Cv/atom {row['score']:.3f} "
            f"± {row['Cv_per_atom_std']:.3f}  (Cv {row['Cv']:.2f} ± {row['Cv_std']:.2f} per primitive cell)"
        )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "screening.csv").write_bytes(results["table"].get_content(mode="rb"))
    print(f"table -> {args.output_dir / 'screening.csv'}")
    if "verification" in results:
        comparison = results["verification"]["comparison"].get_dict()
        print(f"verified with EMT: {', '.join(comparison['compared'])}")
        for label, row in comparison["per_structure"].items():
            print(
                f"  {label}: Cv predicted {row['Cv_predicted']:.2f}, EMT {row['Cv_reference']:.2f} J/(K mol)"
            )
        plot = args.output_dir / "verification-parity.png"
        with results["verification"]["parity_plot"].open(mode="rb") as source, open(plot, "wb") as target:
            shutil.copyfileobj(source, target)
        print(f"parity plot -> {plot}")


if __name__ == "__main__":
    main()
