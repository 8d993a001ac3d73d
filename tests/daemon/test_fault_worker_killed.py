"""A daemon worker killed with SIGKILL while three training work chains wait on their running jobs, then
the daemon restarted (``verdi daemon restart``: stop, start): every process continues from its
checkpoint to a finished state, each job is re-attached (same job id, not run again), and not one node
is lost or stored twice.

What happens in aiida-core 2.9.4 with its ZeroMQ broker: circus respawns the killed worker within a
second or two; the broker sees the peer gone (disconnect, or no ZMTP heartbeat for 6 s) and usually
requeues its tasks, so the new worker loads each process from its last checkpoint and finishes it
without the restart (tried); but the broker can miss the dead peer (see
:func:`tests.daemon.conftest.stop_daemon_with_its_broker`), and then only the restart, which restarts
a ``verdi presto`` daemon's broker from its queue on disk, brings the processes back. The jobs
(``direct`` scheduler: detached ``bash`` processes) do not notice the worker dying.
"""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
import pytest
from aiida import orm
from aiida.engine import ProcessState, submit
from aiida.engine.daemon.client import DaemonClient

from tests.daemon.conftest import _wait, start_daemon_with_its_broker, stop_daemon_with_its_broker
from tests.faults import chain

pytestmark = pytest.mark.slow

CHAINS = 3
#: long enough that every job still trains when the worker is killed, short enough for the test's time
EPOCHS = 25
#: what a finished TrainCalculation creates (a training with a test split also writes its predictions)
OUTPUTS = {"remote_folder", "retrieved", "model", "metrics", "learning_curve", "test_predictions"}
ACTIVE = [ProcessState.CREATED.value, ProcessState.WAITING.value, ProcessState.RUNNING.value]


def _calcs(chain_pk: int) -> list[orm.CalcJobNode]:
    query = orm.QueryBuilder()
    query.append(orm.WorkChainNode, filters={"id": chain_pk}, tag="chain")
    query.append(orm.CalcJobNode, with_incoming="chain", project="*")
    return sorted(query.all(flat=True), key=lambda node: node.pk)


def _job_ids(chains: list[int]) -> dict[int, str | None]:
    """Each chain's first calculation's job id (None until the job is submitted)."""
    ids: dict[int, str | None] = {}
    for pk in chains:
        calcs = _calcs(pk)
        ids[pk] = calcs[0].base.attributes.get("job_id", None) if calcs else None
    return ids


def _workers(client: DaemonClient) -> list[int]:
    return sorted(int(pid) for pid in client.get_worker_info()["info"])


def _active(pks: list[int]) -> list[tuple[int, str]]:
    query = orm.QueryBuilder().append(
        orm.ProcessNode,
        filters={"id": {"in": pks}, "attributes.process_state": {"in": ACTIVE}},
        project=["id", "attributes.process_state"],
    )
    return [tuple(row) for row in query.all()]


def _all_terminated(pks: list[int]) -> bool:
    query = orm.QueryBuilder().append(orm.ProcessNode, filters={"id": {"in": pks}}, project="*")
    return len(query.all()) == len(pks) and all(node.is_terminated for node in query.all(flat=True))


def test_killed_worker_and_restarted_daemon_lose_nothing(
    started_daemon_client, cgcnn_code, dataset_node, small_model, verdi_env
):
    client = started_daemon_client
    last_pk = orm.QueryBuilder().append(orm.Node, project="id").order_by({orm.Node: {"id": "desc"}}).first()
    before = last_pk[0] if last_pk else 0

    parameters = {"model": small_model, "train": {"epochs": EPOCHS, "batch_size": 8, "seed": 1}}
    chains = [
        submit(chain(cgcnn_code, dataset_node, parameters, max_iterations=2, max_wallclock_seconds=600)).pk
        for _ in range(CHAINS)
    ]
    # every job submitted to the scheduler: the calculations wait on them, checkpointed as such
    _wait(lambda: all(_job_ids(chains).values()), 300, "the jobs to be submitted", client)
    jobs = _job_ids(chains)
    assert all(psutil.pid_exists(int(job)) for job in jobs.values())  # direct scheduler: the job's PID

    killed = _workers(client)
    assert killed, "the daemon has no worker"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not any(psutil.pid_exists(pid) for pid in killed), 60, "the killed worker to go", client)
    # circus respawns the worker (it watches its processes); the jobs go on without it
    _wait(lambda: set(_workers(client)) - set(killed), 120, "a worker in place of the killed one", client)
    assert not set(_workers(client)) & set(killed)

    # and the operator's answer: `verdi daemon restart` (what it runs: stop, then start, the broker too)
    stop_daemon_with_its_broker(client)
    start_daemon_with_its_broker(client)

    _wait(lambda: _all_terminated(chains), 600, "the work chains to finish", client)

    for pk in chains:
        node = orm.load_node(pk)
        assert node.is_finished_ok, (pk, node.exit_status, node.exit_message)
        (calc,) = _calcs(pk)  # no calculation run twice
        assert calc.is_finished_ok, (calc.pk, calc.exit_status, calc.exit_message)
        # re-attached to the job it had submitted, not submitted again
        assert calc.get_job_id() == jobs[pk]
        assert set(calc.outputs) == OUTPUTS
        assert node.outputs.model.uuid == calc.outputs.model.uuid
        assert node.outputs.metrics["epochs_run"] == EPOCHS
        assert len(node.outputs.learning_curve.get_array("epoch")) == EPOCHS

    # nothing left active (`verdi process list` lists none), and every node made since the submission is
    # a chain, one of its inputs, its calculation or one of that calculation's outputs: none stored twice
    env, profile = verdi_env
    listing = subprocess.run(
        ["verdi", "-p", profile, "process", "list", "--raw"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listing.returncode == 0 and listing.stdout.strip() == "", listing.stdout + listing.stderr
    new = set(orm.QueryBuilder().append(orm.Node, filters={"id": {">": before}}, project="id").all(flat=True))
    assert _active(sorted(new)) == []
    expected = set()
    for pk in chains:
        node = orm.load_node(pk)
        expected |= {pk} | {link.node.pk for link in node.base.links.get_incoming().all()}
        for calc in _calcs(pk):
            expected |= {calc.pk} | {link.node.pk for link in calc.base.links.get_incoming().all()}
            expected |= {link.node.pk for link in calc.base.links.get_outgoing().all()}
    assert new == {pk for pk in expected if pk > before}
    # per chain: itself, its parameters, max_iterations and clean_workdir, one calculation, its outputs
    assert len(new) == CHAINS * (1 + 3 + 1 + len(OUTPUTS))
