"""The training CalcJob through a real scheduler and transport: SLURM and SSH on 127.0.0.1.

``.ci/slurm-ssh/start.sh`` starts the cluster and the sshd (CI does it before the tests). Without
them this test is skipped, except under CI, where a missing cluster is a failure.
"""

import os
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.train import TrainCalculation

pytestmark = pytest.mark.slurm

CLUSTER = Path(os.environ.get("SLURM_SSH_DIR", "/tmp/aiida-cgcnn-slurm"))


def _cluster_env() -> dict[str, str] | None:
    path = CLUSTER / "env"
    if not path.is_file():
        return None
    return dict(line.split("=", 1) for line in path.read_text().split())


@pytest.fixture
def slurm_computer(aiida_profile, tmp_path):
    env = _cluster_env()
    if env is None:
        message = f"no SLURM + sshd cluster (run .ci/slurm-ssh/start.sh; looked in {CLUSTER})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    computer = orm.Computer(
        label=f"slurm-ssh-{tmp_path.name}",
        hostname="127.0.0.1",
        transport_type="core.ssh",
        scheduler_type="core.slurm",
        workdir=str(tmp_path / "remote-work"),
    ).store()
    computer.set_shebang("#!/bin/bash")
    computer.set_default_mpiprocs_per_machine(1)
    computer.set_minimum_job_poll_interval(1.0)
    computer.configure(
        username="root",
        port=int(env["AIIDA_CGCNN_SLURM_PORT"]),
        look_for_keys=False,
        key_filename=str(Path(env["AIIDA_CGCNN_SLURM_DIR"]) / "id_ed25519"),
        allow_agent=False,
        key_policy="AutoAddPolicy",
        timeout=30,
        safe_interval=0.0,
        use_login_shell=False,
    )
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
