"""Prediction through AiiDA: the CalcJob, the calcfunction, caching and the provenance query."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_cgcnn.calculations.functions import predict_structures
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.provenance import find_predictions, list_models


@pytest.fixture
def trained(cgcnn_code, dataset_node, small_model):
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict(
        {"model": {**small_model, "pooling": "site"}, "train": {"epochs": 3, "batch_size": 8}}
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok
    return results["model"]


def _predict_builder(code, model, dataset):
    builder = PredictCalculation.get_builder()
    builder.code = code
    builder.model = model
    builder.dataset = dataset
    builder.device = "cpu"
    return builder


def test_predict_calcjob_calcfunction_and_provenance_query(cgcnn_code, trained, dataset_node, structures):
    results, node = run_get_node(_predict_builder(cgcnn_code, trained, dataset_node))
    assert node.is_finished_ok, node.exit_message
    predictions = results["predictions"]
    ids = predictions.get_array("ids")
    values = predictions.get_array("values")
    assert list(ids) == [s.uuid for s in structures]  # dataset order; ids are the structures' UUIDs
    assert values.shape == (len(structures), 1) and np.all(np.isfinite(values))
    assert predictions.base.attributes.get("units") == ["eV/atom"]
    assert "site_contributions" in results

    # the same values in-process, through the Predictor the calcfunction uses
    local = trained.get_predictor().predict([s.get_ase() for s in structures])
    np.testing.assert_allclose(values, local.values, rtol=1e-5)

    # the quick calcfunction, recorded
    outputs = predict_structures(model=trained, first=structures[0], second=structures[1])
    assert outputs["first"]["values"]["emt_energy"] == pytest.approx(values[0, 0], rel=1e-5)
    sites = outputs["first"]["site_contributions"]["emt_energy"]
    assert len(sites) == len(structures[0].sites)
    assert np.mean(sites) == pytest.approx(values[0, 0], rel=1e-5)

    # one query: every prediction for a structure, with value, unit, model, training dataset and date
    records = find_predictions(structures[0])
    assert len(records) == 2
    assert sorted(r.process_type for r in records) == [
        "aiida.calculations:cgcnn.predict",
        "aiida_cgcnn.calculations.functions.predict.predict_structures",
    ]
    for record in records:
        assert record.values["emt_energy"] == pytest.approx(values[0, 0], rel=1e-5)
        assert record.units == {"emt_energy": "eV/atom"}
        assert record.model_uuid == trained.uuid
        assert record.training_dataset_uuid == dataset_node.uuid
    assert find_predictions(structures[5])[0].values["emt_energy"] == pytest.approx(values[5, 0], rel=1e-5)
    # and the model list knows its dataset and metrics
    row = next(r for r in list_models() if r["uuid"] == trained.uuid)
    assert row["dataset_pk"] == dataset_node.pk and "mae" in row["test"]


def test_same_model_same_structures_come_from_the_cache(cgcnn_code, trained, dataset_node, structures):
    with enable_caching(identifier="aiida.calculations:cgcnn.predict"):
        _, first = run_get_node(_predict_builder(cgcnn_code, trained, dataset_node))
        _, second = run_get_node(_predict_builder(cgcnn_code, trained, dataset_node))
    assert first.is_finished_ok and second.is_finished_ok
    assert second.base.caching.is_created_from_cache
    assert second.base.caching.get_cache_source() == first.uuid
    with enable_caching(identifier="aiida_cgcnn.calculations.functions.predict.predict_structures"):
        _, _one = run_get_node(predict_structures, model=trained, s=structures[3])
        _, two = run_get_node(predict_structures, model=trained, s=structures[3])
    assert two.base.caching.is_created_from_cache


def test_model_data_is_validated_and_never_stored_twice(trained, tmp_path):
    path = trained.export(tmp_path / "model.pt")
    assert ModelData.get_or_create(path).uuid == trained.uuid
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pt|not a loadable"):
        ModelData(garbage)
    attributes = trained.base.attributes.all
    assert attributes["architecture"] == "cgcnn" and attributes["pooling"] == "site"
    assert attributes["targets"] == ["emt_energy"] and attributes["units"] == ["eV/atom"]
    assert len(attributes["sha256"]) == 64 and "test" in attributes["metrics"]


def test_model_data_takes_a_relative_path(trained, tmp_path, monkeypatch):
    """``ModelData("run/best.pt")``, as users write it (SinglefileData itself wants absolute paths)."""
    trained.export(tmp_path / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert ModelData("model.pt").base.attributes.get("sha256") == trained.sha256


def test_dataset_node_gives_its_structures_back(dataset_node, structures):
    assert dataset_node.size == len(structures)
    assert dataset_node.base.attributes.get("elements")
    sources = dataset_node.get_source_structures()
    assert set(sources) == {s.uuid for s in structures}
    rebuilt = dataset_node.get_structures()
    for node, original in zip(rebuilt, structures, strict=True):
        assert node.label == original.uuid
        np.testing.assert_allclose(node.cell, original.cell, atol=1e-10)
        assert node.get_formula() == original.get_formula()


def test_predictions_for_invalid_structures_are_skipped_not_lost(cgcnn_code, trained, structures):
    from aiida_cgcnn.calculations.functions import dataset_from_structures

    lonely = orm.StructureData(cell=np.eye(3) * 30.0)
    lonely.append_atom(position=(0, 0, 0), symbols="Cu")
    lonely.store()
    dataset = dataset_from_structures([*structures[:4], lonely], np.zeros(5), ["emt_energy"], ["eV/atom"])
    results, node = run_get_node(_predict_builder(cgcnn_code, trained, dataset))
    assert node.is_finished_ok
    assert list(results["predictions"].get_array("ids")) == [s.uuid for s in structures[:4]]
    assert lonely.uuid in results["skipped"].get_dict()


def test_dataset_node_from_a_cgcnn_directory(aiida_profile, shared_data, tmp_path):
    from aiida_cgcnn.data.dataset import CrystalDatasetData

    node = CrystalDatasetData.from_cgcnn_directory(shared_data / "jarvis-sample", skip_invalid=True).store()
    assert node.size == 49
    assert list(node.base.attributes.get("skipped")) == ["POSCAR-JVASP-21210.vasp"]
    exported = node.export(tmp_path / "jarvis.npz")
    from aiida_cgcnn.training.dataset import CrystalDataset

    assert CrystalDataset.load(exported).sha256() == node.get_dataset().sha256()
    assert node.sha256 == __import__("hashlib").sha256(exported.read_bytes()).hexdigest()
