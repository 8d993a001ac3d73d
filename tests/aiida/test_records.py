"""Prediction records in one shape, found for a structure and for a model; models and datasets as a new
user lists them (kinds, per-target errors with units, epochs, training data of a command-line model)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import calcfunction

from aiida_cgcnn.calculations.functions import dataset_from_structures, predict_structures
from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.data.prediction import PredictionData
from aiida_cgcnn.descriptors.hybrid import attach_descriptors
from aiida_cgcnn.provenance import find_model_predictions, find_predictions, list_models
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

SMALL = {"atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16}


@calcfunction
def my_screening(model: ModelData, crystal: orm.StructureData) -> PredictionData:
    """A user's own recorder, named as nothing in the plugin."""
    values = model.get_predictor().predict([crystal.get_ase()]).values[0]
    return PredictionData.create(
        crystal,
        model,
        "mine",
        dict(zip(model.targets, map(float, values), strict=True)),
        dict(zip(model.targets, model.units, strict=True)),
    )


def _dataset(alloy_data) -> CrystalDataset:
    """Two targets of different units; the first is named ``units``, as a user may name one."""
    structures, energies = alloy_data
    targets = np.stack([energies * 8, energies], axis=1)
    dataset, _ = CrystalDataset.from_structures(
        structures, targets, target_names=["units", "emt_energy"], units=["eV", "eV/atom"]
    )
    return dataset


@pytest.fixture(scope="module")
def hybrid_checkpoint(alloy_data, tmp_path_factory):
    """A de-CGCNN (two descriptors) trained on the command line's trainer, site pooling, 2 epochs."""
    dataset, _ = attach_descriptors(_dataset(alloy_data), "density,vpa")
    folder = tmp_path_factory.mktemp("hybrid")
    result = Trainer(
        dataset,
        folder / "run",
        model_config={**SMALL, "pooling": "site"},
        train_config={"epochs": 2, "batch_size": 8, "seed": 3},
        progress=False,
    ).fit()
    return result.best_checkpoint, dataset


def test_a_target_named_units_does_not_collide_and_every_recorder_is_found(
    aiida_profile, hybrid_checkpoint, structures
):
    path, _ = hybrid_checkpoint
    model = ModelData.get_or_create(path)
    outputs = predict_structures(model=model, a=structures[0], b=structures[1])
    record = outputs["a"]
    assert isinstance(record, PredictionData)
    direct = model.get_predictor().predict([structures[0].get_ase()])
    assert record["values"]["units"] == pytest.approx(float(direct.values[0, 0]), rel=1e-6)
    assert record["values"]["emt_energy"] == pytest.approx(float(direct.values[0, 1]), rel=1e-6)
    assert record["units"] == {"units": "eV", "emt_energy": "eV/atom"}
    assert record["structure"] == structures[0].uuid and record["model"] == model.uuid
    assert set(record["site_contributions"]) == {"units", "emt_energy"}
    assert len(record["site_contributions"]["units"]) == len(structures[0].sites)
    assert record["std"] == {} and record["out_of_domain"] is None
    assert "units = " in record.description and record.label.startswith(structures[0].get_formula())

    (found,) = find_predictions(structures[0])
    assert found.values == record["values"] and found.units == record["units"]
    assert found.model_uuid == model.uuid and found.process_uuid == record.creator.uuid

    # every prediction of this model: both structures, each once
    ours = {structures[0].uuid, structures[1].uuid}
    made = [r for r in find_model_predictions(model) if r.structure_uuid in ours]
    assert sorted(r.structure_uuid for r in made) == sorted(ours)


def test_a_recorder_is_found_whatever_its_name(aiida_profile, hybrid_checkpoint, structures):
    """The rule is the record, not the function: a user's own calcfunction that records a
    PredictionData is found like predict_structures."""
    path, _ = hybrid_checkpoint
    model = ModelData.get_or_create(path)
    record = my_screening(model, structures[7])
    (found,) = find_predictions(structures[7])
    assert found.values == record["values"] and found.process_type.endswith("my_screening")


def test_listing_shows_the_hybrid_per_target_errors_epochs_and_training_data(
    aiida_profile, hybrid_checkpoint, tmp_path, monkeypatch
):
    path, dataset = hybrid_checkpoint
    # a relative path, as written in a shell: ModelData.get_or_create("run/best.pt")
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    model = ModelData.get_or_create("run/best.pt")
    assert model.is_stored and ModelData.get_or_create(run / "best.pt").uuid == model.uuid

    assert model.kind == "de-CGCNN" and model.descriptors
    assert model.label.startswith("de-CGCNN (site) units [eV], emt_energy [eV/atom]; 2 epochs")
    assert "test MAE units" in model.description
    metrics = model.metrics["test"]["per_target"]
    row = next(r for r in list_models() if r["uuid"] == model.uuid)
    assert row["kind"] == "de-CGCNN" and row["epochs"] == 2
    assert row["test_mae"] == {
        "units": [pytest.approx(metrics["units"]["mae"]), "eV"],
        "emt_energy": [pytest.approx(metrics["emt_energy"]["mae"]), "eV/atom"],
    }
    # trained on the command line: the dataset is not in the profile, the checkpoint's sha256 is shown
    assert row["dataset_pk"] is None and row["dataset_sha256"] == dataset.sha256()
    # once the same dataset is stored, the model finds it by that sha256
    node = CrystalDatasetData.from_dataset(dataset).store()
    assert model.get_training_dataset().uuid == node.uuid
    row = next(r for r in list_models() if r["uuid"] == model.uuid)
    assert row["dataset_pk"] == node.pk and row["dataset_size"] == len(dataset)


def test_dataset_from_one_group_twice_is_one_node(aiida_profile, structures, alloy_data):
    group = orm.Group(label=f"alloys-{structures[0].uuid[:8]}").store()
    group.add_nodes(structures[:6])
    energies = alloy_data[1][:6]
    first = dataset_from_structures(group, energies, ["emt_energy"], ["eV/atom"])
    second = dataset_from_structures(group, energies, ["emt_energy"], ["eV/atom"])
    assert second.uuid == first.uuid
    assert first.label == group.label and "6 structures" in first.description
    # other targets (or units) are another dataset
    third = dataset_from_structures(group, energies + 1.0, ["emt_energy"], ["eV/atom"])
    assert third.uuid != first.uuid
