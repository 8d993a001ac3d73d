"""A hybrid model's U and Cv against phonopy references, with provenance:
``verdi run examples/phonon_comparison.py`` (a fresh ``verdi presto`` profile is enough; a few CPU
minutes). ``verdi run examples/phonon_comparison.py -- --n-train 20 --epochs 5`` is a quicker look
(a worse model).

1. EMT phonons (phonopy, finite displacements) of fcc metals and ordered fcc alloys under a little
   strain: U and Cv at 300 and 600 K per mole of primitive cells, the unstable ones left out.
2. A de-CGCNN (sum pooling, the 28 descriptors of the hybridization paper) trained on them through
   the ``cgcnn.train`` CalcJob; targets U_300K, Cv_300K, U_600K, Cv_600K.
3. The ``cgcnn.phonon_comparison`` work chain at 300 K on crystals whose compositions the model never
   saw (the split is by composition: no strained sibling of a test crystal is trained on), and on
   bcc Cu, which is dynamically unstable: EMT phonon references, the model's predictions for
   phonopy's primitive cells, the comparison and a parity plot.
4. The same comparison at 600 K, from the force sets step 3 computed (``phonopy_data``: the third
   way of getting references, as with DFT force sets from phonondb), so no force is computed twice.

The parity plots are written to ``--output-dir`` (``runs/phonon-comparison`` by default).
``benchmarks/bench_phonons.py`` runs the same comparison against phonondb's DFT force sets.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_cgcnn.calculations.functions import dataset_from_structures
from aiida_cgcnn.phonons import PhononSettings, calculate_phonons
from aiida_cgcnn.workflows.demo import get_or_create_code
from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain
from aiida_cgcnn.workflows.train import TrainWorkChain

#: EMT's own fcc lattice constants (Å), near its energy minima
LATTICE = {"Al": 4.05, "Ni": 3.52, "Cu": 3.59, "Pd": 3.94, "Ag": 4.09, "Pt": 3.94, "Au": 4.08}
#: Small and quick: supercells at least 8 Å wide, a 20 Å mesh (converged enough for a demonstration)
SETTINGS = {"min_supercell_length_angstrom": 8.0, "mesh": 20.0}


def crystals(strains=(-0.02, 0.0, 0.01)) -> dict[str, object]:
    """fcc metals and L1₂ (A₃B) ordered alloys (Vegard lattice constants), strained isotropically."""

    def tag(strain: float) -> str:  # names are link labels: letters, digits and underscores
        return f"{'m' if strain < 0 else 'p'}{abs(strain) * 100:.0f}"

    out = {}
    for element, strain in itertools.product(LATTICE, strains):
        out[f"{element}_{tag(strain)}"] = bulk(element, "fcc", a=LATTICE[element] * (1 + strain))
    for (a, b), strain in itertools.product(itertools.permutations(LATTICE, 2), strains[:2]):
        cell = bulk(a, "fcc", a=(3 * LATTICE[a] + LATTICE[b]) / 4 * (1 + strain), cubic=True)
        cell.symbols[0] = b  # L1₂: B on the cube corner, A on the faces
        out[f"{a}3{b}_{tag(strain)}"] = cell
    return out


#: The temperatures (K) the model learns and is compared at
TEMPERATURES = (300.0, 600.0)


def composition(name: str) -> str:
    """``Ni3Al_m2`` -> ``Ni3Al``: the crystal's composition, without its strain tag."""
    return name.rsplit("_", 1)[0]


def split_by_composition(names, n_unseen: int = 5, seed: int = 0) -> tuple[list[str], list[str]]:
    """One unstrained crystal of each of ``n_unseen`` held-out compositions, and every crystal of the
    other compositions: no test crystal has a strained sibling in the training set."""
    compositions = sorted({composition(n) for n in names})
    held_out = set(np.random.default_rng(seed).choice(compositions, size=n_unseen, replace=False).tolist())
    unseen = sorted(n for n in names if composition(n) in held_out and n.endswith("_p0"))
    training = sorted(n for n in names if composition(n) not in held_out)
    return unseen, training


def main(
    n_train: int | None = None,
    epochs: int = 80,
    output_dir: str | Path = "runs/phonon-comparison",
    echo=print,
) -> dict:
    settings = PhononSettings.from_dict(SETTINGS)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    everything = crystals()
    unseen, training = split_by_composition(everything)
    if n_train is not None:
        training = [str(n) for n in np.random.default_rng(1).permutation(training)[:n_train]]

    kelvin = " and ".join(f"{t:g}" for t in TEMPERATURES)
    echo(f"1. EMT phonons of {len(training)} crystals (phonopy, {kelvin} K) ...")
    echo(f"   held out for testing, with every other strain of their compositions: {', '.join(unseen)}")
    primitive_cells, targets = [], []
    for name in training:
        record = calculate_phonons(everything[name], EMT(), list(TEMPERATURES), settings, name=name)
        if not record.properties.stable:
            lowest = record.properties.lowest_frequency_thz
            echo(f"   {name}: unstable (lowest frequency {lowest:.2f} THz), left out")
            continue
        primitive_cells.append(orm.StructureData(ase=record.to_atoms()).store())
        u, cv = record.properties.internal_energy_kjmol, record.properties.heat_capacity_jkmol
        targets.append([value for k in range(len(TEMPERATURES)) for value in (u[k], cv[k])])
    names = [f"{prop}_{t:g}K" for t in TEMPERATURES for prop in ("U", "Cv")]
    units = ["kJ/mol", "J/(K mol)"] * len(TEMPERATURES)
    dataset = dataset_from_structures(primitive_cells, targets, names, units)
    echo(f"   CrystalDatasetData<{dataset.pk}>: {dataset.size} primitive cells, {', '.join(names)}")

    echo(f"2. Training a de-CGCNN (sum pooling, 28 descriptors) for {epochs} epochs with cgcnn.train ...")
    builder = TrainWorkChain.get_builder()
    builder.train.code = get_or_create_code()
    builder.train.dataset = dataset
    builder.train.parameters = orm.Dict(
        {
            "model": {"pooling": "sum", "atom_fea_len": 32, "n_conv": 2, "h_fea_len": 64},
            "train": {"epochs": epochs, "batch_size": 8, "lr": 0.003, "seed": 0},
            "descriptors": "all",
        }
    )
    builder.train.metadata.options.max_wallclock_seconds = 3600
    results, train = run_get_node(builder)
    if not train.is_finished_ok:
        raise RuntimeError(f"training failed: {train.exit_status} {train.exit_message}")
    model = results["model"]
    echo(f"   ModelData<{model.pk}>: targets {model.targets}, units {model.units}")

    echo(f"3. cgcnn.phonon_comparison on {len(unseen)} unseen crystals and bcc Cu (EMT references) ...")
    comparison = PhononComparisonWorkChain.get_builder()
    comparison.structures = {name: orm.StructureData(ase=everything[name]) for name in unseen}
    comparison.structures["Cu_bcc"] = orm.StructureData(ase=bulk("Cu", "bcc", a=2.87))
    comparison.model = model
    comparison.model_temperature = orm.Float(TEMPERATURES[0])
    comparison.reference.engine = orm.Dict({"calculator": "ase.calculators.emt.EMT"})
    comparison.reference.phonopy = orm.Dict(SETTINGS)
    comparison.reference.temperatures = orm.List(list(TEMPERATURES))
    pks = {"dataset": dataset.pk, "model": model.pk}
    outputs = _compare(comparison, output_dir, echo, pks)

    echo(f"4. The same at {TEMPERATURES[1]:g} K, from the force sets of step 3 (no force computed again) ...")
    again = PhononComparisonWorkChain.get_builder()
    again.phonopy_data = dict(outputs["phonopy_data"])
    again.model = model
    again.model_temperature = orm.Float(TEMPERATURES[1])
    again.reference.phonopy = orm.Dict(SETTINGS)
    again.reference.temperatures = orm.List(list(TEMPERATURES))
    _compare(again, output_dir, echo, pks)
    return pks


def _compare(builder, output_dir: Path, echo, pks: dict) -> dict:
    """Run one comparison, print its table and metrics, write its parity plot."""
    outputs, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise RuntimeError(f"the comparison failed: {node.exit_status} {node.exit_message}")
    result = outputs["comparison"].get_dict()
    compared, temperature = result["n_compared"], result["temperature_K"]
    echo(f"   PhononComparisonWorkChain<{node.pk}>: {compared} compared at {temperature:g} K")
    echo(f"   {'crystal':<14s} {'U ref':>8s} {'U pred':>8s} {'Cv ref':>8s} {'Cv pred':>8s}")
    for label, row in result["per_structure"].items():
        echo(
            f"   {label:<14s} {row['U_reference']:8.3f} {row['U_predicted']:8.3f} "
            f"{row['Cv_reference']:8.3f} {row['Cv_predicted']:8.3f}"
        )
    for prop in ("U", "Cv"):
        metrics = result[prop]
        ratio = metrics["mae_over_mad"]
        echo(
            f"   {prop}: MAE {metrics['mae']:.4f} {metrics['unit']}, MAE/MAD "
            f"{'n/a' if ratio is None else f'{ratio:.3f}'}, largest error {metrics['max_abs_error']:.4f} "
            f"({metrics['max_error_structure']})"
        )
    for label, reason in result["excluded"].items():
        echo(f"   left out {label}: {reason}")
    path = output_dir / f"phonon_parity_{temperature:g}K.png"
    path.write_bytes(outputs["parity_plot"].get_content(mode="rb"))
    echo(f"   parity plot: SinglefileData<{outputs['parity_plot'].pk}> -> {path}")
    pks[f"comparison_{temperature:g}K"] = node.pk
    return outputs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="EMT phonons, a de-CGCNN of U and Cv, the comparison.")
    parser.add_argument("--n-train", type=int, default=None, help="Training crystals [all of the others].")
    parser.add_argument("--epochs", type=int, default=80, help="Training epochs [80].")
    parser.add_argument(
        "--output-dir",
        default="runs/phonon-comparison",
        help="Folder of the parity plots [runs/phonon-comparison].",
    )
    args = parser.parse_args()
    main(n_train=args.n_train, epochs=args.epochs, output_dir=args.output_dir)
