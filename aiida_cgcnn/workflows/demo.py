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
        if str(code.filepath_executable) == executable:
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
) -> dict:
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
    builder.train.code = code
    builder.train.dataset = dataset
    builder.train.parameters = orm.Dict({"train": {"epochs": epochs, "batch_size": 32}})
    builder.train.metadata.options.max_wallclock_seconds = 3600
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
            echo(
                f"   StructureData<{structure.pk}> {structure.get_formula():>8s}  EMT {true:7.4f}  predicted "
                f"{record.values['emt_energy']:7.4f} {record.units['emt_energy']}  "
                f"by ModelData<{record.model_pk}> "
                f"({kind}), trained on {record.training_dataset_uuid[:8]}"
            )
    values = outputs["predictions"].get_array("values")[:, 0]
    echo(f"   MAE on the unseen alloys: {np.mean(np.abs(values - new_energies)):.4f} eV/atom")
    echo(
        "   Same query from the shell: verdi data cgcnn.model predictions <structure pk>; "
        "verdi data cgcnn.model list"
    )
    return {"dataset": dataset.pk, "model": model.pk, "train": workchain.pk, "predict": calc.pk}
