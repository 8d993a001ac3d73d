"""The SSH server of the SLURM test cluster stopped while training jobs are queued and running (the
listening sshd and every connection it serves, so a transport AiiDA holds open breaks), kept down for
some seconds, then started again with start.sh's command line (``.ci/slurm-ssh/start-sshd.sh``):
AiiDA's transport tasks retry with exponential backoff and every job completes with its outputs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from aiida import orm
from aiida.engine import ProcessState
from aiida.manage import get_manager
from aiida.manage.configuration import get_config

from aiida_cgcnn.calculations.train import TrainCalculation
from tests.integration.test_slurm_ssh import _code, slurm_computer  # noqa: F401
from tests.services import cluster_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.ssh_outage]

START_SSHD = Path(__file__).resolve().parents[2] / ".ci" / "slurm-ssh" / "start-sshd.sh"
JOBS = 3  # one at a time (SLURM's singleton dependency): one runs, the others wait in the queue
EPOCHS = 10
DOWN_S = 8.0
#: retry after 1, 2, 4, ... s (aiida's default begins at 20 s), and 8 times (covers 127 s) before pausing
RETRY = {"transport.task_retry_initial_interval": 1, "transport.task_maximum_attempts": 8}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _connected(port: int) -> bool:
    """Whether this process (AiiDA's transport) holds a connection to the sshd."""
    connections = psutil.Process().net_connections(kind="tcp")
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections)


def stop_sshd(directory: Path) -> int:
    """Stop the listening sshd first (no new connection), then every connection process under it
    (SIGTERM, SIGKILL after 30 s). Returns how many connection processes were ended."""
    listener = psutil.Process(int((directory / "sshd.pid").read_text()))
    connections = listener.children(recursive=True)
    processes = [listener, *connections]
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=30)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=30)
    return len(connections)


def start_sshd(directory: Path) -> None:
    """start.sh's sshd (a no-op if it runs)."""
    env = {**os.environ, "SLURM_SSH_DIR": str(directory)}
    subprocess.run(["bash", str(START_SSHD)], env=env, check=True, capture_output=True, timeout=120)


def _squeue(name: str) -> list[str]:
    """The states of this test's jobs in the queue."""
    out = subprocess.run(
        ["squeue", "-h", "--name", name, "-o", "%T"], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.split()


class RestartSshdWhenQueuedAndRunning(threading.Thread):
    """Once all this test's jobs are in the queue, some running and some pending, stops the sshd,
    keeps it down ``DOWN_S`` seconds, and starts it again."""

    def __init__(self, directory: Path, port: int, name: str, timeout: float = 600.0) -> None:
        super().__init__(daemon=True)
        self.directory, self.port, self.name, self.timeout = directory, port, name, timeout
        self.states: list[str] = []
        self.connections = -1
        self.was_down = False
        self.transport_open = False
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                states = _squeue(self.name)
                if len(states) == JOBS and "RUNNING" in states and "PENDING" in states:
                    self.states = states
                    # when AiiDA's transport is open (it is, while a poll of the queue runs), to break it
                    within = time.monotonic() + 30
                    while not self.transport_open and time.monotonic() < within:
                        self.transport_open = _connected(self.port)
                        time.sleep(0.005)
                    self.connections = stop_sshd(self.directory)
                    self.was_down = not _listening(self.port)
                    self.stopped.wait(DOWN_S)
                    start_sshd(self.directory)
                    return
                self.stopped.wait(0.2)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error


@pytest.fixture
def quick_transport_retries(aiida_profile):
    # set where the engine reads them: the loaded configuration and profile, which, with several
    # conftests' session profiles in one xdist worker, need not be this conftest's `aiida_profile`
    from aiida.manage import get_manager

    config, profile = get_config(), get_manager().get_profile()
    assert profile is not None
    for option, value in RETRY.items():
        config.set_option(option, value, scope=profile.name)
    yield
    for option in RETRY:
        config.unset_option(option, scope=profile.name)


def test_jobs_complete_across_an_ssh_server_restart(
    slurm_computer,  # noqa: F811
    quick_transport_retries,
    cgcnn_executable,
    dataset_node,
    small_model,
):
    env = cluster_env()
    assert env is not None  # slurm_computer skipped otherwise
    directory, port = Path(env["AIIDA_CGCNN_SLURM_DIR"]), int(env["AIIDA_CGCNN_SLURM_PORT"])
    name = f"cgcnn-sshd-{uuid.uuid4().hex[:12]}"
    code = _code(slurm_computer, cgcnn_executable)
    builders = []
    for seed in range(JOBS):
        builder = TrainCalculation.get_builder()
        builder.code = code
        builder.dataset = dataset_node
        train = {"epochs": EPOCHS, "batch_size": 8, "seed": seed}
        builder.parameters = orm.Dict({"model": small_model, "train": train})
        builder.metadata.options.max_wallclock_seconds = 600
        builder.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        builder.metadata.options.custom_scheduler_commands = (
            f"#SBATCH --job-name={name}\n#SBATCH --dependency=singleton"
        )
        # the first job runs for 8 s more than it trains: a loaded engine submits the others seconds
        # later (3-4 s apart seen), and all three must be in the queue while it runs
        builder.metadata.options.prepend_text = "sleep 8"
        builders.append(builder)

    runner = get_manager().get_runner()
    fault = RestartSshdWhenQueuedAndRunning(directory, port, name)
    fault.start()
    try:
        processes = [runner.instantiate_process(builder) for builder in builders]
        tasks = [runner.loop.create_task(process.step_until_terminated()) for process in processes]
        # paused (all retries spent) would wait for ever: 10 minutes are far more than it takes
        runner.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks), timeout=600))
    finally:
        fault.stopped.set()
        fault.join(timeout=120)
        start_sshd(directory)  # the cluster's sshd runs again, whatever happened
    assert _listening(port)

    assert fault.error is None, fault.error
    assert fault.states, "the jobs were never queued and running together: sshd was not restarted"
    assert fault.was_down
    nodes = [process.node for process in processes]
    for node in nodes:
        assert node.process_state is ProcessState.FINISHED
        assert node.is_finished_ok, (node.pk, node.exit_status, node.exit_message)
        assert node.outputs.metrics["epochs_run"] == EPOCHS
        assert node.outputs.model.base.attributes.get("targets") == ["emt_energy"]
        assert {"remote_folder", "retrieved", "learning_curve"} <= set(node.outputs)
    assert len({node.get_job_id() for node in nodes}) == JOBS and all(node.get_job_id() for node in nodes)
    # every job felt the outage: its transport task failed to connect (aiida logs each failed attempt's
    # traceback on the calculation) and was retried until sshd was back. The connection AiiDA held open
    # when sshd stopped (`fault.transport_open`) fails too, with an EOFError, in the calculations whose
    # request it carried: not asserted, since under load the poll may end before the connection does
    for node in nodes:
        failures = [
            log.message
            for log in orm.Log.collection.get_logs_for(node)
            if "in exponential_backoff_retry" in log.message
        ]
        assert any("Unable to connect to port" in failure for failure in failures), (node.pk, failures)
