"""A training job cancelled mid-run by a SIGTERM, as a scheduler cancels it (``qdel``; ``scancel`` on
the SLURM test cluster is tests/integration/test_fault_scancel.py): the work chain resumes from the
last per-epoch checkpoint and ends with exactly the model of an uninterrupted run."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from tests.faults import (
    OnFirstCheckpoint,
    assert_resumed_from_the_cancelled_job,
    assert_same_training,
    chain,
    deterministic_training,
    terminate_command,
)


@pytest.mark.slow
def test_a_job_cancelled_by_sigterm_resumes_to_the_uninterrupted_model(
    aiida_code_installed, cgcnn_executable, dataset_node, small_model, tmp_path
):
    computer = orm.Computer(
        label=f"cancelled-{tmp_path.name}",
        hostname="localhost",
        transport_type="core.local",
        scheduler_type="core.direct",
        workdir=str(tmp_path / "work"),  # this test's jobs only: the watcher takes the first it sees
    ).store()
    computer.configure(safe_interval=0.0)
    computer.set_minimum_job_poll_interval(0.2)
    computer.set_default_mpiprocs_per_machine(1)
    code = aiida_code_installed(
        label="aiida-cgcnn-cancelled",
        computer=computer,
        filepath_executable=cgcnn_executable,
        prepend_text="export OMP_NUM_THREADS=1",
    )
    parameters = deterministic_training(small_model)
    with OnFirstCheckpoint(tmp_path / "work", terminate_command) as watcher:
        _, node = run_get_node(chain(code, dataset_node, parameters))
    assert watcher.error is None and watcher.fired, watcher.error
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    # the job script's shell says how its command ended: bash's line for a SIGTERM
    assert_resumed_from_the_cancelled_job(node, "Terminated")

    _, straight = run_get_node(chain(code, dataset_node, parameters))
    assert straight.is_finished_ok and len(straight.called) == 1
    assert_same_training(node, straight)
