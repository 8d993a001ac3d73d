"""The README's main job on the embedded profile: StructureData in, a model trained by the CalcJob,
predictions by the CalcJob and the calcfunction, and the provenance query that finds them."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

__all__ = ["get_or_create_code", "run_aiida_demo"]


def get_or_create_code(computer_label: str = "localhost") -> orm.InstalledCode:
    """The ``aiida-cgcnn`` executable of this environment as an ``InstalledCode`` on ``computer_label``."""
    computer = orm.load_computer(computer_label)
    executable = shutil.which("aiida-cgcnn") or str(Path(sys.executable).parent / "aiida-cgcnn")
    label = "aiida-cgcnn"
    query = orm.QueryBuilder().append(orm.Computer, filters={"id": computer.pk}, tag="computer")
    query.append(orm.InstalledCode, with_computer="computer", filters={"label": label}, project="*")
    for (code,) in query.all():
        if isinstance(code, orm.InstalledCode) and str(code.filepath_executable) == executable:
            return code
    if computer.get_default_mpiprocs_per_machine() is None:
        computer.set_default_mpiprocs_per_machine(1)
    return orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=executable,
        default_calc_job_plugin="cgcnn.train",
        description="aiida-cgcnn command line (train, predict)",
    ).store()


def run_aiida_demo(
    n_structures: int = 200,
    epochs: int = 30,
    echo: Callable[[str], None] = print,
    computer_label: str = "localhost",
    pretrained: bool = True,
) -> dict[str, int | None]:
    """Train and predict through AiiDA on the loaded profile; returns the node pks it made."""
    from ..calculations.functions import dataset_from_structures, predict_structures
    from ..calculations.predict import PredictCalculation
    from ..demo import emt_alloys
    from ..provenance import find_predictions
    from .train import TrainWorkChain

    code = get_or_create_code(computer_label)
    echo(f"1. {n_structures} alloy cells with EMT energies, stored as StructureData ...")
    atoms, energies = emt_alloys(n_structures, seed=0)
    structures = [orm.StructureData(ase=a).store() for a in atoms]
    group, _ = orm.Group.collection.get_or_create("aiida-cgcnn-demo/alloys")
    group.add_nodes(structures)
    dataset = dataset_from_structures(structures, energies, ["emt_energy"], ["eV/atom"])
    echo(f"   CrystalDatasetData<{dataset.pk}>: {dataset.size} structures, sha256 {dataset.sha256[:12]}")

    echo(f"2. Training CGCNN for {epochs} epochs with the cgcnn.train CalcJob (restart work chain) ...")
    builder = TrainWorkChain.get_builder()
    train = builder["train"]  # a namespace of the builder (its attributes are made at run time)
    train.code = code
    train.dataset = dataset
    train.parameters = orm.Dict({"train": {"epochs": epochs, "batch_size": 32}})
    train.metadata.options.max_wallclock_seconds = 3600
    results, workchain = run_get_node(builder)
    if not workchain.is_finished_ok:
        raise RuntimeError(f"training failed: {workchain.exit_status} {workchain.exit_message}")
    model = results["model"]
    test = results["metrics"]["test"]
    echo(f"   ModelData<{model.pk}>: test MAE {test['mae']:.4f} eV/atom, MAE/MAD {test['mae_over_mad']:.3f}")

    echo(
        "3. Predicting unseen alloys with the cgcnn.predict CalcJob and the predict_structures "
        "calcfunction ..."
    )
    new_atoms, new_energies = emt_alloys(5, seed=12345)
    new_structures = [orm.StructureData(ase=a).store() for a in new_atoms]
    new_dataset = dataset_from_structures(new_structures, new_energies, ["emt_energy"], ["eV/atom"])
    predict = PredictCalculation.get_builder()
    predict.code = code
    predict.model = model
    predict.dataset = new_dataset
    predict.device = "cpu"
    outputs, calc = run_get_node(predict)
    if not calc.is_finished_ok:
        raise RuntimeError(f"prediction failed: {calc.exit_status} {calc.exit_message}")
    predict_structures(model=model, first=new_structures[0])

    echo("4. Provenance: every prediction recorded for each new structure")
    for structure, true in zip(new_structures, new_energies, strict=True):
        for record in find_predictions(structure):
            kind = "calcfunction" if "functions" in record.process_type else "CalcJob"
            uuid = record.training_dataset_uuid
            trained_on = uuid[:8] if uuid else "an unrecorded dataset"
            echo(
                f"   StructureData<{structure.pk}> {structure.get_formula():>8s}  EMT {true:7.4f}  predicted "
                f"{record.values['emt_energy']:7.4f} {record.units['emt_energy']}  "
                f"by ModelData<{record.model_pk}> "
                f"({kind}), trained on {trained_on}"
            )
    values = outputs["predictions"].get_array("values")[:, 0]
    echo(f"   MAE on the unseen alloys: {np.mean(np.abs(values - new_energies)):.4f} eV/atom")
    echo(
        "   Same query from the shell: verdi data cgcnn.model predictions <structure pk>; "
        "verdi data cgcnn.model list"
    )
    pks = {"dataset": dataset.pk, "model": model.pk, "train": workchain.pk, "predict": calc.pk}
    if pretrained:
        pks["pretrained"] = _pretrained_phonons(echo)
    return pks


#: Well-known crystals at their experimental lattice constants (Å), given as conventional cubic cells;
#: PuO2 has an element phonondb never saw, to show the out-of-domain flag.
DEMO_CRYSTALS = [
    ("NaCl", "rocksalt", 5.640),
    ("MgO", "rocksalt", 4.212),
    ("Si", "diamond", 5.431),
    ("GaAs", "zincblende", 5.653),
    ("Al", "fcc", 4.050),
    ("PuO2", "fluorite", 5.396),
]


def _pretrained_phonons(echo: Callable[[str], None]) -> int | None:
    """U and Cv at 300 K with uncertainty from the shipped phonon ensemble, recorded in the graph."""
    import warnings

    from ase.build import bulk

    from ..calculations.functions import predict_structures
    from ..data.pretrained import import_pretrained
    from ..ensemble import OutOfDomainWarning
    from ..provenance import find_predictions

    echo("5. The pretrained phonons-300K ensemble (shipped, offline): U and Cv at 300 K of real crystals")
    ensemble = import_pretrained("phonons-300K")
    echo(f"   EnsembleData<{ensemble.pk}>: {ensemble.model_label}, {len(ensemble.member_files)} members")
    structures = {}
    for formula, kind, a in DEMO_CRYSTALS:
        atoms = bulk(formula, kind, a=a, cubic=True)
        structures[formula.lower()] = orm.StructureData(ase=atoms).store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)  # the flag is printed below
        outputs = predict_structures(model=ensemble, **structures)
    echo(
        f"   {'crystal':8s} {'atoms':>9s}  {'U [kJ/mol]':>16s}  {'Cv [J/(K mol)]':>16s}  "
        f"{'Cv per atom':>14s}  (per primitive cell; ± calibrated σ)"
    )
    for label, structure in structures.items():
        data = outputs[label].get_dict()
        values, std = data["values"], data["std"]
        flag = f"  OUT OF DOMAIN: {data['out_of_domain']}" if data["out_of_domain"] else ""
        echo(
            f"   {structure.get_formula():8s} {data['cell_atoms']:>3d} -> {data['basis_atoms']:<3d}  "
            f"{values['U']:8.2f} ± {std['U']:5.2f}  {values['Cv']:8.2f} ± {std['Cv']:5.2f}  "
            f"{data['per_atom']['Cv']:6.2f} ± {data['per_atom_std']['Cv']:4.2f}{flag}"
        )
    record = find_predictions(structures["nacl"])[-1]
    echo(f"   find_predictions(NaCl): Cv {record.values['Cv']:.2f} {record.units['Cv']} by {record.model}")
    echo(f"   verdi data cgcnn.model predictions {structures['nacl'].pk}  # says: {ensemble.model_label}")
    return ensemble.pk
