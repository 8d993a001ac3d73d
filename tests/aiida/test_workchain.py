"""The restart work chain, each handler driven by a real failure of the real command."""

from pathlib import Path

import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.remote_cache import remote_cache_directory
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.workflows.train import TrainWorkChain


def _builder(code, dataset, parameters, max_iterations=5):
    builder = TrainWorkChain.get_builder()
    builder.train.code = code
    builder.train.dataset = dataset
    builder.train.parameters = orm.Dict(parameters)
    builder.train.metadata.options.max_wallclock_seconds = 1800
    builder.max_iterations = orm.Int(max_iterations)
    return builder


def _calculations(node):
    return sorted(node.called, key=lambda n: n.ctime)


def test_walltime_resume_reaches_the_uninterrupted_result(cgcnn_code, dataset_node, small_model):
    train = {"epochs": 4, "batch_size": 8, "seed": 3}
    _, straight = run_get_node(_builder(cgcnn_code, dataset_node, {"model": small_model, "train": train}))
    assert straight.is_finished_ok
    assert len(straight.called) == 1

    # the same run with a time budget so short that each calculation trains one epoch
    budget = {**train, "time_budget": 0.01, "time_margin": 0.0}
    _, resumed = run_get_node(
        _builder(cgcnn_code, dataset_node, {"model": small_model, "train": budget}, max_iterations=6)
    )
    assert resumed.is_finished_ok, resumed.exit_message
    calcs = _calculations(resumed)
    assert len(calcs) >= 2
    assert all(
        c.exit_status == TrainCalculation.exit_codes.STOPPED_BEFORE_WALLTIME.status for c in calcs[:-1]
    )
    assert calcs[-1].is_finished_ok
    assert "parent_folder" in calcs[1].inputs

    a = straight.outputs.model.get_checkpoint()
    b = resumed.outputs.model.get_checkpoint()
    assert a["epoch"] == b["epoch"] and a["best_epoch"] == b["best_epoch"]
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    assert straight.outputs.metrics["test"] == resumed.outputs.metrics["test"]


def test_diverged_loss_lowers_the_learning_rate(cgcnn_code, dataset_node, small_model):
    parameters = {
        "model": small_model,
        "train": {"epochs": 3, "batch_size": 8, "optimizer": "sgd", "lr": 100.0, "seed": 1},
    }
    _, node = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
    calcs = _calculations(node)
    assert calcs[0].exit_status == TrainCalculation.exit_codes.ERROR_LOSS_DIVERGED.status
    assert calcs[1].inputs.parameters["train"]["lr"] == 10.0
    assert node.is_finished_ok and calcs[-1].is_finished_ok


def test_out_of_memory_halves_the_batch_size(aiida_code_installed, dataset_node, cgcnn_executable):
    code = aiida_code_installed(
        label="aiida-cgcnn-3GB-wc",
        filepath_executable=cgcnn_executable,
        prepend_text="ulimit -v 3000000; export OMP_NUM_THREADS=1",
    )
    parameters = {
        "model": {"atom_fea_len": 30000, "n_conv": 1, "h_fea_len": 32},
        "train": {"epochs": 1, "batch_size": 16},
    }
    _, node = run_get_node(_builder(code, dataset_node, parameters, max_iterations=2))
    calcs = _calculations(node)
    assert [c.exit_status for c in calcs] == [TrainCalculation.exit_codes.ERROR_OUT_OF_MEMORY.status] * 2
    assert calcs[1].inputs.parameters["train"]["batch_size"] == 8
    # this model does not fit at any batch size: the work chain gives up after max_iterations
    assert node.exit_status == TrainWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status


@pytest.mark.slow
def test_fine_tuning_weights_survive_a_resume_and_a_restart(cgcnn_code, dataset_node, small_model):
    """Fine-tune -> stopped at the time budget -> resumed -> diverged: the third calculation starts
    again from the fine-tuning weights (not from random ones), with a tenfold lower learning rate."""
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict({"model": small_model, "train": {"epochs": 2, "batch_size": 8, "seed": 1}})
    results, _ = run_get_node(builder)
    start = results["model"]

    # SGD at lr 10 from these weights: a finite loss in epoch 0, NaN in epoch 1; the tiny time budget
    # stops every calculation after one epoch
    train = {"epochs": 2, "batch_size": 8, "seed": 1, "optimizer": "sgd", "lr": 10.0, "scheduler": "none"}
    train.update(time_budget=0.01, time_margin=0.0)
    chain = _builder(cgcnn_code, dataset_node, {"model": small_model, "train": train}, max_iterations=6)
    chain.train.model = start
    _, node = run_get_node(chain)
    calcs = _calculations(node)
    codes = TrainCalculation.exit_codes
    assert [c.exit_status for c in calcs[:2]] == [
        codes.STOPPED_BEFORE_WALLTIME.status,
        codes.ERROR_LOSS_DIVERGED.status,
    ]
    assert calcs[0].inputs.model.uuid == start.uuid
    assert calcs[1].inputs.parent_folder.uuid == calcs[0].outputs.remote_folder.uuid
    assert "model" not in calcs[1].inputs  # the resumed run carries the fine-tuned weights in its checkpoint
    third = calcs[2]
    assert "parent_folder" not in third.inputs
    assert third.inputs.model.uuid == start.uuid
    assert third.inputs.parameters["train"]["lr"] == 1.0
    assert node.is_finished_ok, node.exit_message


@pytest.mark.slow
def test_deleted_dataset_cache_is_uploaded_again(cgcnn_code, dataset_node, small_parameters):
    """The cached dataset file deleted on the computer: the first calculation exits 410, the work chain
    uploads the dataset with the next one, which succeeds, and later ones read the cache again."""
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict(small_parameters)
    _, first = run_get_node(builder)
    assert first.is_finished_ok
    cached = Path(remote_cache_directory(cgcnn_code.computer)) / "datasets" / f"{dataset_node.sha256}.npz"
    assert cached.is_file()
    cached.unlink()

    _, node = run_get_node(_builder(cgcnn_code, dataset_node, small_parameters))
    calcs = _calculations(node)
    assert calcs[0].exit_status == TrainCalculation.exit_codes.ERROR_REMOTE_DATASET_MISSING.status
    assert "dataset.npz" not in calcs[0].outputs.remote_folder.listdir()
    assert calcs[1].is_finished_ok and node.is_finished_ok
    assert "dataset.npz" in calcs[1].outputs.remote_folder.listdir()
    assert calcs[1].get_metadata_inputs()["metadata"]["options"]["reuse_remote_dataset"] is False
    assert cached.is_file()
    # the re-upload is for one calculation: the next one reads the cache again
    _, again = run_get_node(builder)
    assert again.is_finished_ok and "dataset.npz" not in again.outputs.remote_folder.listdir()
