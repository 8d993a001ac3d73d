"""Every exit code of the training CalcJob, provoked for real with the real command."""

import getpass
import json
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.remote_cache import CACHE_PROPERTY
from aiida_cgcnn.calculations.train import TIME_BUDGET_ATTRIBUTE, TrainCalculation
from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.structures import Crystal
from aiida_cgcnn.training.dataset import CrystalDataset


def _run(code, dataset, parameters, walltime=1800):
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = walltime
    return run_get_node(builder)


def test_invalid_dataset_names_the_structures(cgcnn_code, alloy_data, small_model):
    structures, energies = alloy_data
    good = [
        CrystalDataset.from_structures([s], [e])[0].crystal(0)
        for s, e in zip(structures[:12], energies[:12], strict=True)
    ]
    good = [Crystal(f"alloy-{k}", c.lattice, c.frac_coords, c.numbers) for k, c in enumerate(good)]
    lonely = Crystal("isolated-Cu", np.eye(3) * 25.0, np.zeros((1, 3)), np.array([29]))
    dataset = CrystalDataset.from_crystals(
        [*good, lonely], np.append(energies[:12], 0.0)[:, None], ["e"], ["eV"]
    )
    _, node = _run(cgcnn_code, CrystalDatasetData.from_dataset(dataset), {"model": small_model})
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_INVALID_DATASET.status
    assert "isolated-Cu" in node.exit_message and "max_radius" in node.exit_message
    # with skip_invalid the rest trains
    _, node = _run(
        cgcnn_code,
        CrystalDatasetData.from_dataset(dataset),
        {"model": small_model, "train": {"epochs": 1}, "skip_invalid": True},
    )
    assert node.is_finished_ok
    assert "isolated-Cu" in node.outputs.retrieved.get_object_content("skipped.txt")
    assert node.outputs.metrics["num_skipped"] == 1


def test_diverged_loss(cgcnn_code, dataset_node, small_model):
    parameters = {
        "model": small_model,
        "train": {"epochs": 3, "batch_size": 8, "optimizer": "sgd", "lr": 1e4},
    }
    _, node = _run(cgcnn_code, dataset_node, parameters)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_LOSS_DIVERGED.status
    assert "nan" in node.exit_message or "inf" in node.exit_message


def test_out_of_memory(aiida_code_installed, aiida_localhost, dataset_node, cgcnn_executable):
    # a real allocation failure: a 3 GB address-space limit and a model that needs 14 GB
    code = aiida_code_installed(
        label="aiida-cgcnn-3GB",
        filepath_executable=cgcnn_executable,
        prepend_text="ulimit -v 3000000; export OMP_NUM_THREADS=1",
    )
    parameters = {"model": {"atom_fea_len": 30000, "n_conv": 1, "h_fea_len": 32}, "train": {"epochs": 1}}
    _, node = _run(code, dataset_node, parameters)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_OUT_OF_MEMORY.status
    assert "allocate" in node.exit_message


def test_stopped_before_walltime_keeps_a_model(cgcnn_code, dataset_node, small_model):
    """A user's time budget and margin take precedence over the walltime's and reach the command as
    they are; it stops training inside budget - margin."""
    budget, margin = 8.0, 4.0
    parameters = {
        "model": small_model,
        "train": {"epochs": 1000, "batch_size": 8, "time_budget": budget, "time_margin": margin},
    }
    results, node = _run(cgcnn_code, dataset_node, parameters, walltime=1800)
    assert node.exit_status == TrainCalculation.exit_codes.STOPPED_BEFORE_WALLTIME.status
    config = json.loads(node.base.repository.get_object_content("config.json"))
    assert (config["train"]["time_budget"], config["train"]["time_margin"]) == (budget, margin)
    assert node.base.attributes.get(TIME_BUDGET_ATTRIBUTE) == budget
    assert 1 <= results["metrics"]["epochs_run"] < 1000
    assert results["metrics"]["stopped_reason"] == "time_budget"
    assert "model" in results
    # from skipped.json, written as the epochs start, to last.pt, rewritten as each epoch ends
    run = Path(node.outputs.remote_folder.get_remote_path()) / "run"
    assert (run / "last.pt").stat().st_mtime - (run / "skipped.json").stat().st_mtime <= budget - margin


def _dry_run_config(code, dataset, parameters, walltime) -> dict:
    """config.json as ``prepare_for_submission`` writes it (a dry run: nothing runs or is stored)."""
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = walltime
    builder.metadata.dry_run = True
    builder.metadata.store_provenance = False
    _, node = run_get_node(builder)
    return json.loads((Path(node.dry_run_info["folder"]) / "config.json").read_text())


def test_walltime_becomes_the_time_budget(cgcnn_code, dataset_node, small_model, tmp_path, monkeypatch):
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict({"model": small_model, "train": {"epochs": 1}})
    builder.metadata.options.max_wallclock_seconds = 600
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    config = json.loads(node.base.repository.get_object_content("config.json"))
    # the margin is 5 % of the walltime
    assert (config["train"]["time_budget"], config["train"]["time_margin"]) == (600.0, 30.0)
    assert node.base.attributes.get(TIME_BUDGET_ATTRIBUTE) == 600.0

    monkeypatch.chdir(tmp_path)  # a dry run's folder is made in the working directory
    train = {"model": small_model, "train": {"epochs": 1}}
    for walltime, margin in ((100, 20.0), (6000, 300.0), (10**6, 300.0)):  # at least 20 s, at most 300 s
        config = _dry_run_config(cgcnn_code, dataset_node, train, walltime)["train"]
        assert (config["time_budget"], config["time_margin"]) == (float(walltime), margin), walltime
    # the user's margin, and the user's budget, take precedence over the walltime's
    given = {"model": small_model, "train": {"epochs": 1, "time_margin": 45}}
    config = _dry_run_config(cgcnn_code, dataset_node, given, 600)["train"]
    assert (config["time_budget"], config["time_margin"]) == (600.0, 45)
    given = {"model": small_model, "train": {"epochs": 1, "time_budget": 120, "time_margin": 10}}
    config = _dry_run_config(cgcnn_code, dataset_node, given, 600)["train"]
    assert (config["time_budget"], config["time_margin"]) == (120.0, 10)


def test_remote_dataset_gone(
    aiida_computer_local, aiida_code_installed, cgcnn_executable, dataset_node, tmp_path
):
    """The cache directory comes from the computer; a dataset cached there, then deleted, gives its own
    exit code, after which the next calculation uploads it again (the latest calculation decides)."""
    computer = aiida_computer_local(label=f"cache-{tmp_path.name}")
    computer.set_property(CACHE_PROPERTY, str(tmp_path / "caches" / "{username}"))
    code = aiida_code_installed(
        label="aiida-cgcnn-cache",
        computer=computer,
        filepath_executable=cgcnn_executable,
        prepend_text="export OMP_NUM_THREADS=1",
    )
    parameters = {"model": {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16}, "train": {"epochs": 1}}
    _, first = _run(code, dataset_node, parameters)
    assert first.is_finished_ok
    cached = tmp_path / "caches" / getpass.getuser() / "datasets" / f"{dataset_node.sha256}.npz"
    assert cached.is_file()
    cached.unlink()
    _, gone = _run(code, dataset_node, parameters)
    assert gone.exit_status == TrainCalculation.exit_codes.ERROR_REMOTE_DATASET_MISSING.status
    assert str(tmp_path / "caches" / "{username}") in gone.exit_message and cached.name in gone.exit_message
    # that calculation said the file is gone: the next one uploads it, and stores it again
    _, again = _run(code, dataset_node, parameters)
    assert again.is_finished_ok and "dataset.npz" in again.outputs.remote_folder.listdir()
    assert cached.is_file()


def test_unexpected_error_reports_its_traceback(cgcnn_code, dataset_node):
    """A bug in the command (here a zero Gaussian step, which no validation catches) is not invalid
    input: ERROR_COMMAND_FAILED with the end of the traceback in the message."""
    parameters = {
        "model": {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16, "step": 0.0},
        "train": {"epochs": 1},
    }
    _, node = _run(cgcnn_code, dataset_node, parameters)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_COMMAND_FAILED.status
    assert "ZeroDivisionError" in node.exit_message
    assert 'File "' in node.exit_message  # a traceback line: where it happened
    # the command wrote it to status.json (not only to stderr): status "error", not invalid input
    status = json.loads(node.outputs.retrieved.get_object_content("status.json"))
    assert status["status"] == "error" and "ZeroDivisionError" in status["traceback"]
