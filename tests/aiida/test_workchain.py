"""The restart work chain, each handler driven by a real failure of the real command."""

import torch
from aiida import orm
from aiida.engine import run_get_node

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
