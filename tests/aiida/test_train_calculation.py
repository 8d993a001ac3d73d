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


@pytest.mark.slow
def test_fine_tuning_from_a_model(cgcnn_code, dataset_node, small_parameters):
    """The given model's weights start the training: with a learning rate too small to move them, the
    fine-tuned model keeps the parent's weights, where the same run without ``model`` keeps its
    seeded fresh ones."""
    results, _ = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    parent = results["model"]
    still = {**small_parameters, "train": {"epochs": 1, "batch_size": 8, "seed": 1, "lr": 1e-12}}
    builder = _builder(cgcnn_code, dataset_node, still)
    builder.model = parent
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.outputs.model.uuid != parent.uuid
    fresh, fresh_node = run_get_node(_builder(cgcnn_code, dataset_node, still))
    assert fresh_node.is_finished_ok, fresh_node.exit_message

    def weights(model):  # parameters only: BatchNorm's running statistics move with any training
        state = model.get_checkpoint()["state_dict"]
        return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}

    tuned, start, new = weights(node.outputs.model), weights(parent), weights(fresh["model"])
    assert tuned.keys() == start.keys() == new.keys()
    for name in start:
        assert np.allclose(tuned[name].numpy(), start[name].numpy(), rtol=0, atol=1e-6), name
    # its training moved the parent away from the fresh start by far more than the tolerance
    assert max((new[k] - start[k]).abs().max().item() for k in start if start[k].numel()) > 1e-3


def test_distributed_training_through_the_calcjob(
    aiida_code_installed, aiida_localhost, cgcnn_executable, dataset_node, small_parameters
):
    """``nproc_per_node`` runs the command data-parallel under torchrun (2 CPU processes, gloo)."""
    aiida_localhost.set_minimum_job_poll_interval(0.2)
    # torchrun's launcher logs the ranks it starts and how they ended
    code = aiida_code_installed(
        label="aiida-cgcnn-ddp",
        filepath_executable=cgcnn_executable,
        prepend_text="export OMP_NUM_THREADS=1 LOGLEVEL=INFO",
    )
    parameters = {**small_parameters, "train": {"epochs": 2, "batch_size": 4}, "nproc_per_node": 2}
    results, node = run_get_node(_builder(code, dataset_node, parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results["metrics"]["epochs_run"] == 2
    assert "'--nproc-per-node' '2'" in node.base.repository.get_object_content("_aiidasubmit.sh")
    stderr = node.outputs.retrieved.get_object_content("aiida.err")
    assert "Traceback" not in stderr
    assert "global_ranks=[0, 1]" in stderr and "global_world_sizes=[2, 2]" in stderr
    assert "Local worker group finished (WorkerState.SUCCEEDED)" in stderr
    # both ranks wrote to aiida.out, but only rank 0 of one process group reports: two processes each
    # training alone would report twice
    assert node.outputs.retrieved.get_object_content("aiida.out").count("trained 2 epochs") == 1


def test_hybrid_model_through_the_calcjob(cgcnn_code, dataset_node, small_parameters):
    """``parameters.descriptors`` trains de-CGCNN; a wrong descriptor name is refused at submission."""
    with pytest.raises(ValueError, match=r"parameters\.descriptors: unknown descriptors \['densty'\]"):
        run_get_node(_builder(cgcnn_code, dataset_node, {**small_parameters, "descriptors": "densty"}))
    parameters = {**small_parameters, "train": {"epochs": 1, "batch_size": 8}, "descriptors": "density,vpa"}
    results, node = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
    assert node.is_finished_ok, node.exit_message
    assert results["model"].base.attributes.get("descriptors") == ["density", "vpa"]
