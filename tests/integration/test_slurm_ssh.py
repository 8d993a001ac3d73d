"""The training CalcJob through a real scheduler and transport: SLURM and SSH on 127.0.0.1.

``.ci/slurm-ssh/start.sh`` starts the cluster and the sshd (CI does it before the tests). Without
them this test is skipped, except under CI, where a missing cluster is a failure.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import CalcJob, run_get_node

from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.workflows.train import TrainWorkChain
from tests.faults import chain
from tests.services import CLUSTER, cluster_computer

pytestmark = pytest.mark.slurm


@pytest.fixture
def slurm_computer(aiida_profile, tmp_path):
    computer = cluster_computer(f"slurm-ssh-{tmp_path.name}", tmp_path / "remote-work")
    if computer is None:
        message = f"no SLURM + sshd cluster (run .ci/slurm-ssh/start.sh; looked in {CLUSTER})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return computer


def test_training_through_slurm_and_ssh(slurm_computer, cgcnn_executable, dataset_node, small_model):
    code = orm.InstalledCode(
        label="aiida-cgcnn",
        computer=slurm_computer,
        filepath_executable=cgcnn_executable,
        default_calc_job_plugin="cgcnn.train",
        prepend_text="export OMP_NUM_THREADS=1",
    ).store()
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict({"model": small_model, "train": {"epochs": 3, "batch_size": 8}})
    builder.metadata.options.max_wallclock_seconds = 600
    builder.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    # what a GPU cluster needs goes the same way: here a harmless SLURM directive and environment
    builder.metadata.options.custom_scheduler_commands = "#SBATCH --job-name=aiida-cgcnn-ci"
    builder.metadata.options.environment_variables = {"CUDA_VISIBLE_DEVICES": ""}
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert node.get_job_id()  # a real SLURM job id
    script = node.base.repository.get_object_content("_aiidasubmit.sh")
    assert "#SBATCH --job-name=aiida-cgcnn-ci" in script and "#SBATCH --time=00:10:00" in script
    assert results["metrics"]["epochs_run"] == 3
    assert results["model"].base.attributes.get("targets") == ["emt_energy"]


def _code(computer, executable):
    return orm.InstalledCode(
        label="aiida-cgcnn",
        computer=computer,
        filepath_executable=executable,
        default_calc_job_plugin="cgcnn.train",
        prepend_text="export OMP_NUM_THREADS=1",
    ).store()


@pytest.mark.slow
def test_slurm_walltime_kill_resumes_from_the_last_checkpoint(
    slurm_computer, cgcnn_executable, dataset_node, small_model
):
    """SLURM kills the job at its 1-minute limit (the command was told a longer time budget, so it did
    not stop itself): exit 120; the work chain resumes from the run/last.pt written every epoch, with the
    walltime as the time budget and twice the margin, so the next job stops itself in time."""
    parameters = {
        "model": small_model,
        "train": {"epochs": 100000, "batch_size": 8, "seed": 1, "time_budget": 3600.0},
    }
    builder = chain(
        _code(slurm_computer, cgcnn_executable),
        dataset_node,
        parameters,
        max_iterations=2,
        max_wallclock_seconds=60,
    )
    _, node = run_get_node(builder)
    killed, resumed = sorted(node.called, key=lambda n: n.ctime)
    assert killed.exit_status == CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    assert "due to time limit" in killed.outputs.retrieved.get_object_content("_scheduler-stderr.txt").lower()
    assert "status.json" not in killed.outputs.retrieved.base.repository.list_object_names()

    assert resumed.inputs.parent_folder.uuid == killed.outputs.remote_folder.uuid
    train = resumed.inputs.parameters["train"]
    assert "time_budget" not in train and train["time_margin"] == 40.0  # 2 x max(20 s, 5 % of 60 s)
    assert resumed.exit_status == TrainCalculation.exit_codes.STOPPED_BEFORE_WALLTIME.status
    # the resumed job continued the killed one's epochs: its history starts with them
    checkpoint = torch.load(
        Path(killed.outputs.remote_folder.get_remote_path()) / "run" / "last.pt", weights_only=False
    )
    before = [record["train_loss"] for record in checkpoint["history"]]
    after = resumed.outputs.learning_curve.get_array("train_loss")
    assert 1 <= len(before) < len(after)
    np.testing.assert_array_equal(after[: len(before)], before)
    assert node.exit_status == TrainWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status


@pytest.mark.slow
def test_slurm_memory_kill_starts_again_from_the_fine_tuning_weights(
    slurm_computer, cgcnn_code, cgcnn_executable, dataset_node, small_model
):
    """SLURM kills the job for exceeding its 200 MB (--mem, enforced by polling) before the first
    checkpoint: exit 110; the work chain starts again from the fine-tuning weights."""
    start = TrainCalculation.get_builder()
    start.code = cgcnn_code
    start.dataset = dataset_node
    start.parameters = orm.Dict({"model": small_model, "train": {"epochs": 1, "batch_size": 8}})
    weights = run_get_node(start)[0]["model"]

    parameters = {"model": small_model, "train": {"epochs": 3, "batch_size": 8}}
    code = _code(slurm_computer, cgcnn_executable)
    builder = chain(
        code, dataset_node, parameters, max_iterations=2, max_wallclock_seconds=600, max_memory_kb=200 * 1024
    )
    builder.train.model = weights
    _, node = run_get_node(builder)
    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [CalcJob.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY.status] * 2
    stderr = calcs[0].outputs.retrieved.get_object_content("_scheduler-stderr.txt")
    assert "exceeded memory limit" in stderr.lower()
    assert "#SBATCH --mem=200" in calcs[0].base.repository.get_object_content("_aiidasubmit.sh")
    assert "parent_folder" not in calcs[1].inputs and calcs[1].inputs.model.uuid == weights.uuid
    assert node.exit_status == TrainWorkChain.exit_codes.ERROR_MAXIMUM_ITERATIONS_EXCEEDED.status


def test_screen_shards_run_as_separate_slurm_jobs(slurm_computer, cgcnn_executable, structures, tmp_path):
    """cgcnn.screen on the cluster: three shards, three SLURM jobs (all submitted before any ended),
    one table of the six structures in input order."""
    from aiida_cgcnn.calculations.functions.screen import read_screening_table
    from aiida_cgcnn.data.model import ModelData
    from aiida_cgcnn.training.dataset import CrystalDataset
    from aiida_cgcnn.training.trainer import Trainer
    from aiida_cgcnn.workflows.screen import ScreenWorkChain
    from tests.builders import SMALL_MODEL

    chosen = structures[:6]
    dataset, _ = CrystalDataset.from_structures(
        [s.get_ase() for s in chosen], np.arange(6.0), ids=[s.uuid for s in chosen], target_names=["y"]
    )
    trained = Trainer(
        dataset, tmp_path / "run", model_config=SMALL_MODEL, train_config={"epochs": 1, "batch_size": 4},
        progress=False,
    ).fit()  # fmt: skip
    builder = ScreenWorkChain.get_builder()
    builder.code = _code(slurm_computer, cgcnn_executable)
    builder.structures = {f"s{k}": s for k, s in enumerate(chosen)}
    builder.model = ModelData.get_or_create(trained.best_checkpoint)
    builder.criterion = orm.Dict({"target": "y", "top_k": 2})
    builder.shard_size = orm.Int(2)
    builder.predict.device = "cpu"
    builder.predict.metadata.options.max_wallclock_seconds = 600
    builder.predict.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    jobs = [orm.load_node(s["calculations"][0]) for s in results["summary"]["shards"]]
    assert len({job.get_job_id() for job in jobs}) == 3 and all(job.get_job_id() for job in jobs)
    assert all(job.computer.uuid == slurm_computer.uuid and job.is_finished_ok for job in jobs)
    assert max(job.ctime for job in jobs) < min(job.mtime for job in jobs)
    _, _, rows = read_screening_table(results["table"])
    assert [r["uuid"] for r in rows] == [s.uuid for s in chosen]
    assert [r["status"] for r in rows] == ["predicted"] * 6 and sum(r["selected"] for r in rows) == 2
