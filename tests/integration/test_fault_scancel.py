"""A training job cancelled with ``scancel`` on the SLURM + sshd test cluster while it trains: the
calculation exits 170 (``ERROR_SCHEDULER_JOB_CANCELLED``, from slurmstepd's line in the scheduler's
stderr), the work chain resumes from the killed job's ``run/last.pt``, and the final model is, bit for
bit, the one of the same training run without interruption (deterministic mode)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from aiida.engine import run_get_node

from tests.faults import (
    OnFirstCheckpoint,
    assert_resumed_from_the_cancelled_job,
    assert_same_training,
    chain,
    deterministic_training,
)
from tests.integration.test_slurm_ssh import _code, slurm_computer  # noqa: F401  (the cluster's computer)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_scancel_mid_training_resumes_to_the_uninterrupted_model(
    slurm_computer,  # noqa: F811
    cgcnn_executable,
    dataset_node,
    small_model,
    tmp_path,
):
    scancel = shutil.which("scancel")
    if scancel is None:
        pytest.fail("the SLURM test cluster runs, but this machine has no `scancel`")
    # the cluster is this machine: its client commands and the work directory are local
    name = f"cgcnn-scancel-{uuid.uuid4().hex[:12]}"

    def cancel(_job) -> None:
        subprocess.run([scancel, "--name", name], check=True, capture_output=True, text=True, timeout=60)

    code = _code(slurm_computer, cgcnn_executable)
    options = {"max_wallclock_seconds": 600, "custom_scheduler_commands": f"#SBATCH --job-name={name}"}
    parameters = deterministic_training(small_model)
    with OnFirstCheckpoint(tmp_path / "remote-work", cancel) as watcher:
        _, node = run_get_node(chain(code, dataset_node, parameters, **options))
    assert watcher.error is None and watcher.fired, watcher.error
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert_resumed_from_the_cancelled_job(node, "CANCELLED AT")

    _, straight = run_get_node(chain(code, dataset_node, parameters, **options))
    assert straight.is_finished_ok and len(straight.called) == 1
    assert_same_training(node, straight)
    assert all(c.get_job_id() for c in [*node.called, *straight.called])  # real SLURM jobs
