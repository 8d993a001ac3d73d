"""The parsers when the command leaves no status.json (killed, crashed on start) or a required output
is gone: real jobs of the real command on the localhost computer, provoked by the code's wrapper."""

from __future__ import annotations

import stat

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.training.trainer import Trainer


@pytest.fixture
def wrapped_code(aiida_code_installed, aiida_localhost, cgcnn_executable, tmp_path):
    """A code whose executable runs ``body`` around the real command (``"$REAL" "$@"``)."""
    aiida_localhost.set_minimum_job_poll_interval(0.2)

    def make(label: str, body: str, prepend_text: str = "") -> orm.InstalledCode:
        script = tmp_path / f"{label}.sh"
        script.write_text(f'#!/bin/bash\nREAL="{cgcnn_executable}"\n{body}\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return aiida_code_installed(
            label=label,
            filepath_executable=str(script),
            prepend_text=f"export OMP_NUM_THREADS=1\n{prepend_text}",
        )

    return make


def _train(code, dataset, parameters):
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = 1800
    return run_get_node(builder)


def _predict(code, model, dataset):
    builder = PredictCalculation.get_builder()
    builder.code = code
    builder.model = model
    builder.dataset = dataset
    builder.device = "cpu"
    return run_get_node(builder)


@pytest.fixture
def model(dataset_node, small_model, tmp_path):
    """A model trained in this process (one epoch)."""
    train = {"epochs": 1, "batch_size": 8}
    result = Trainer(dataset_node.get_dataset(), tmp_path / "trained", small_model, train, workers=1).fit()
    return ModelData.get_or_create(result.best_checkpoint)


def _outputs(node) -> set[str]:
    return set(node.outputs)


# bash reports the job it killed, as a batch script's shell does: stderr is not empty
KILL = (
    '"$REAL" "$@" &\npid=$!\n'
    "for _ in $(seq 3000); do [ -f run/last.pt ] && break; sleep 0.1; done\n"
    "kill -9 $pid\nwait $pid"
)
# too little memory to import torch: a traceback before the command can write status.json
NO_MEMORY = "ulimit -v 300000"


def test_train_killed_mid_training(wrapped_code, dataset_node, small_parameters):
    """SIGKILL once the first epoch is saved, as a scheduler kills a job: no status.json, no outputs
    from the files that are there (best.pt, learning_curve.csv of a run that did not end)."""
    code = wrapped_code("cgcnn-killed", KILL)
    parameters = {**small_parameters, "train": {"epochs": 100000, "batch_size": 8}}
    _, node = _train(code, dataset_node, parameters)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_COMMAND_FAILED.status
    assert "no status.json" in node.exit_message and "Killed" in node.exit_message
    retrieved = node.outputs.retrieved.base.repository.list_object_names()
    assert "best.pt" in retrieved and "status.json" not in retrieved
    assert _outputs(node) == {"retrieved", "remote_folder"}


def test_train_crashing_on_start(wrapped_code, dataset_node, small_parameters):
    code = wrapped_code("cgcnn-no-memory", '"$REAL" "$@"', prepend_text=NO_MEMORY)
    _, node = _train(code, dataset_node, small_parameters)
    stderr = node.outputs.retrieved.get_object_content("aiida.err")
    assert "Traceback (most recent call last)" in stderr
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_COMMAND_FAILED.status
    assert "no status.json" in node.exit_message
    assert stderr.strip().splitlines()[-1] in node.exit_message  # the exception itself
    assert _outputs(node) == {"retrieved", "remote_folder"}


def test_train_without_best_checkpoint(wrapped_code, dataset_node, small_parameters):
    """The command completed, but best.pt is gone: no model, and nothing else half-stored."""
    code = wrapped_code("cgcnn-no-best", '"$REAL" "$@"\nrm run/best.pt')
    _, node = _train(code, dataset_node, small_parameters)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_MISSING_OUTPUT.status
    assert node.exit_message == "The command left no best.pt."
    assert "status.json" in node.outputs.retrieved.base.repository.list_object_names()
    assert _outputs(node) == {"retrieved", "remote_folder"}


def test_predict_crashing_on_start(wrapped_code, model, dataset_node):
    code = wrapped_code("cgcnn-predict-no-memory", '"$REAL" "$@"', prepend_text=NO_MEMORY)
    _, node = _predict(code, model, dataset_node)
    stderr = node.outputs.retrieved.get_object_content("aiida.err")
    assert "Traceback (most recent call last)" in stderr
    assert node.exit_status == PredictCalculation.exit_codes.ERROR_COMMAND_FAILED.status
    assert "no status.json" in node.exit_message
    assert stderr.strip().splitlines()[-1] in node.exit_message
    assert _outputs(node) == {"retrieved", "remote_folder"}


def test_predict_killed(wrapped_code, model, dataset_node):
    """Killed as it starts: no status.json and an empty stderr, so the missing file is the message."""
    code = wrapped_code("cgcnn-predict-killed", '"$REAL" "$@" &\nkill -9 $!\nwait $! 2>/dev/null')
    _, node = _predict(code, model, dataset_node)
    assert node.exit_status == PredictCalculation.exit_codes.ERROR_MISSING_OUTPUT.status
    assert node.exit_message == "The command left no status.json."
    assert _outputs(node) == {"retrieved", "remote_folder"}


def test_predict_without_predictions(wrapped_code, model, dataset_node):
    code = wrapped_code("cgcnn-no-predictions", '"$REAL" "$@"\nrm run/predictions.csv')
    _, node = _predict(code, model, dataset_node)
    assert node.exit_status == PredictCalculation.exit_codes.ERROR_MISSING_OUTPUT.status
    assert node.exit_message == "The command left no predictions.csv."
    retrieved = node.outputs.retrieved.base.repository.list_object_names()
    assert "status.json" in retrieved
    # no predictions, and no skipped list without them
    assert _outputs(node) == {"retrieved", "remote_folder"}
