"""Prediction through AiiDA: the CalcJob, the calcfunction, caching and the provenance query."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_cgcnn.calculations.functions import predict_structures
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.predict import parse_predictions_csv
from aiida_cgcnn.provenance import find_predictions, list_models
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL


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


def _site_contributions(node: orm.SinglefileData) -> dict[str, np.ndarray]:
    """``sites.csv`` of a prediction: per structure id, its (sites, targets) contributions."""
    header, *lines = node.get_content(mode="r").splitlines()
    assert header.split(",")[:2] == ["id", "site"]
    sites: dict[str, list[list[float]]] = {}
    for line in lines:
        sid, site, *row = line.split(",")
        assert int(site) == len(sites.setdefault(sid, []))  # sites in order, numbered from 0
        sites[sid].append([float(v) for v in row])
    return {sid: np.array(rows) for sid, rows in sites.items()}


def _model_trained_in_process(dataset, folder, **model_config) -> ModelData:
    result = Trainer(
        dataset,
        folder,
        model_config={**SMALL_MODEL, **model_config},
        train_config={"epochs": 2, "batch_size": 8, "seed": 2},
        progress=False,
    ).fit()
    return ModelData.get_or_create(result.best_checkpoint)


def test_site_contributions_of_a_sum_pooled_model_add_up(cgcnn_code, dataset_node, structures, tmp_path):
    model = _model_trained_in_process(dataset_node.get_dataset(), tmp_path / "run", pooling="sum")
    results, node = run_get_node(_predict_builder(cgcnn_code, model, dataset_node))
    assert node.is_finished_ok, node.exit_message
    ids = list(results["predictions"].get_array("ids"))
    values = results["predictions"].get_array("values")
    sites = _site_contributions(results["site_contributions"])
    local = model.get_predictor().predict([s.get_ase() for s in structures])
    assert list(sites) == ids == [s.uuid for s in structures]
    for k, sid in enumerate(ids):
        assert sites[sid].shape == (len(structures[k].sites), 1)
        np.testing.assert_allclose(sites[sid], local.site_values[k], rtol=1e-6, atol=1e-7)
        # sum pooling: the crystal's value is the sum of its sites'
        assert sites[sid].sum() == pytest.approx(values[k, 0], rel=1e-6, abs=1e-6)


def test_predictions_of_a_classifier(cgcnn_code, alloy_data, tmp_path):
    """The parser of a classifier's CSV: task and class names, probabilities as in the CSV and as the
    Predictor gives them."""
    atoms, energies = alloy_data
    labels = (energies > np.median(energies)).astype(int)
    dataset, _ = CrystalDataset.from_structures(
        atoms, labels, ids=[f"alloy-{k}" for k in range(len(atoms))], target_names=["stability"],
        task="classification", classes=["low", "high"],
    )  # fmt: skip
    model = _model_trained_in_process(dataset, tmp_path / "run")
    dataset_node = CrystalDatasetData.from_dataset(dataset).store()
    results, node = run_get_node(_predict_builder(cgcnn_code, model, dataset_node))
    assert node.is_finished_ok, node.exit_message
    predictions = results["predictions"]
    assert predictions.base.attributes.get("task") == "classification"
    assert predictions.base.attributes.get("classes") == ["low", "high"]
    ids, values = list(predictions.get_array("ids")), predictions.get_array("values")
    assert ids == [str(i) for i in dataset.ids] and values.shape == (len(dataset), 2)

    units, rows = parse_predictions_csv(
        node.outputs.retrieved.base.repository.get_object_content("predictions.csv")
    )
    assert list(units) == ["id", "predicted", "p_low", "p_high"]
    assert [row["id"] for row in rows] == ids
    np.testing.assert_array_equal(values, [[row["p_low"], row["p_high"]] for row in rows])
    np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-6)
    assert [row["predicted"] for row in rows] == values.argmax(axis=1).tolist()
    local = model.get_predictor().predict(dataset)
    np.testing.assert_allclose(values, local.values, rtol=1e-6, atol=1e-7)


def test_predict_calcjob_calcfunction_and_provenance_query(cgcnn_code, trained, dataset_node, structures):
    results, node = run_get_node(_predict_builder(cgcnn_code, trained, dataset_node))
    assert node.is_finished_ok, node.exit_message
    # a single model's prediction keeps the dataset file in the computer's cache: the next job reads it
    from aiida_cgcnn.calculations.remote_cache import remote_dataset_available

    assert remote_dataset_available(dataset_node, node.computer)
    predictions = results["predictions"]
    ids = predictions.get_array("ids")
    values = predictions.get_array("values")
    assert list(ids) == [s.uuid for s in structures]  # dataset order; ids are the structures' UUIDs
    assert values.shape == (len(structures), 1) and np.all(np.isfinite(values))
    assert predictions.base.attributes.get("units") == ["eV/atom"]

    # the same values in-process, through the Predictor the calcfunction uses
    local = trained.get_predictor().predict([s.get_ase() for s in structures])
    np.testing.assert_allclose(values, local.values, rtol=1e-5)
    # and the same site contributions, whose mean is the prediction of a site-pooled model
    sites = _site_contributions(results["site_contributions"])
    assert list(sites) == list(ids)
    for k, sid in enumerate(ids):
        np.testing.assert_allclose(sites[sid], local.site_values[k], rtol=1e-6, atol=1e-7)
        assert sites[sid].mean() == pytest.approx(values[k, 0], rel=1e-6, abs=1e-7)

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


def test_graph_builders_follow_the_cpus_the_job_asks_for(cgcnn_code, dataset_node, tmp_path, monkeypatch):
    """Two jobs on one node must not each start a builder per CPU of the node: ``--workers`` is the
    ``workers`` input, else mpiprocs x cores per mpiproc of the job's resources; 0 is refused."""
    from aiida_cgcnn.data.pretrained import import_pretrained

    ensemble = import_pretrained("perovskite-formation")
    monkeypatch.chdir(tmp_path)  # a dry run's folder is made in the working directory

    def workers(resources, given=None):
        builder = PredictCalculation.get_builder()
        builder.code, builder.model, builder.dataset = cgcnn_code, ensemble, dataset_node
        builder.metadata.options.resources = resources
        if given is not None:
            builder.workers = given
        builder.metadata.dry_run = True
        builder.metadata.store_provenance = False
        _, node = run_get_node(builder)
        script = (tmp_path / node.dry_run_info["folder"] / "_aiidasubmit.sh").read_text()
        return int(script.split("'--workers' '")[1].split("'")[0])

    assert workers({"num_machines": 1, "num_mpiprocs_per_machine": 1}) == 1
    assert workers({"num_machines": 1, "num_mpiprocs_per_machine": 3}) == 3
    assert workers({"num_machines": 1, "num_mpiprocs_per_machine": 2, "num_cores_per_mpiproc": 4}) == 8
    assert workers({"num_machines": 1, "num_mpiprocs_per_machine": 3}, given=1) == 1
    with pytest.raises(ValueError, match="workers: 0 processes"):
        workers({"num_machines": 1, "num_mpiprocs_per_machine": 1}, given=0)
