"""The training CalcJob run for real: localhost computer, real ``aiida-cgcnn`` command, real parser."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.model import ModelData


def _builder(code, dataset, parameters, **options):
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = options.pop("walltime", 1800)
    for key, value in options.items():
        builder.metadata.options[key] = value
    return builder


def test_training_calcjob_trains_and_parses(cgcnn_code, dataset_node, small_parameters):
    results, node = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = results["model"]
    assert isinstance(model, ModelData)
    assert model.base.attributes.get("targets") == ["emt_energy"]
    assert model.base.attributes.get("units") == ["eV/atom"]
    assert model.base.attributes.get("dataset_sha256")
    metrics = results["metrics"].get_dict()
    assert metrics["epochs_run"] == 4 and metrics["num_train"] == 24
    curve = results["learning_curve"]
    assert len(curve.get_array("epoch")) == 4 and np.all(np.isfinite(curve.get_array("train_loss")))
    assert "emt_energy_pred" in results["test_predictions"].get_content()
    # the model's training dataset is found through the provenance graph
    assert model.get_training_dataset().uuid == dataset_node.uuid
    # large files stay on the computer: last.pt and the graph cache are not retrieved
    retrieved = node.outputs.retrieved.base.repository.list_object_names()
    assert "best.pt" in retrieved and "last.pt" not in retrieved


def test_same_dataset_is_not_uploaded_twice(cgcnn_code, dataset_node, small_parameters):
    _, first = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    assert first.is_finished_ok
    _, second = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    assert second.is_finished_ok
    first_files = first.outputs.remote_folder.listdir()
    second_files = second.outputs.remote_folder.listdir()
    assert "dataset.npz" in first_files
    assert "dataset.npz" not in second_files  # read from the computer's cache instead
    # and the cached copy is used: same metrics for the same seed
    assert first.outputs.metrics["test"] == second.outputs.metrics["test"]


def test_invalid_parameters_are_refused_naming_the_key(cgcnn_code, dataset_node):
    with pytest.raises(ValueError, match=r"parameters\.train\.lrr"):
        run_get_node(_builder(cgcnn_code, dataset_node, {"train": {"lrr": 0.1}}))


def test_fine_tuning_from_a_model(cgcnn_code, dataset_node, small_parameters):
    results, _ = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    builder = _builder(
        cgcnn_code, dataset_node, {**small_parameters, "train": {"epochs": 1, "batch_size": 8}}
    )
    builder.model = results["model"]
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.outputs.model.uuid != results["model"].uuid


def test_distributed_training_through_the_calcjob(cgcnn_code, dataset_node, small_parameters):
    """``nproc_per_node`` runs the command data-parallel under torchrun (2 CPU processes, gloo)."""
    parameters = {**small_parameters, "train": {"epochs": 2, "batch_size": 4}, "nproc_per_node": 2}
    results, node = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results["metrics"]["epochs_run"] == 2
    assert "'--nproc-per-node' '2'" in node.base.repository.get_object_content("_aiidasubmit.sh")
    assert "Traceback" not in node.outputs.retrieved.get_object_content("aiida.err")


def test_hybrid_model_through_the_calcjob(cgcnn_code, dataset_node, small_parameters):
    """``parameters.descriptors`` trains de-CGCNN; a wrong descriptor name is refused at submission."""
    with pytest.raises(ValueError, match=r"parameters\.descriptors: unknown descriptors \['densty'\]"):
        run_get_node(_builder(cgcnn_code, dataset_node, {**small_parameters, "descriptors": "densty"}))
    parameters = {**small_parameters, "train": {"epochs": 1, "batch_size": 8}, "descriptors": "density,vpa"}
    results, node = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
    assert node.is_finished_ok, node.exit_message
    assert results["model"].base.attributes.get("descriptors") == ["density", "vpa"]
