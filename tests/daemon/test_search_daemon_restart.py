"""``cgcnn.hyperparameter_search`` submitted to the daemon (ZeroMQ broker, localhost computer), the daemon
restarted with its broker (stop, start: what ``verdi daemon restart`` runs on a presto profile) while
the search's first wave of training work chains waits on its jobs: the search continues from its
checkpoint to the end, and no trial is run twice (every (trial, epochs) training is one work chain with
one calculation, re-attached to the job it had submitted before the restart)."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from aiida import orm
from aiida.engine import ProcessState, submit

from aiida_cgcnn.workflows.train import TrainWorkChain
from tests.aiida_search.test_search_workchain import builder_for
from tests.daemon.conftest import _wait, start_daemon_with_its_broker, stop_daemon_with_its_broker
from tests.daemon.test_fault_worker_killed import _all_terminated, _calcs

pytestmark = pytest.mark.slow

#: rungs of 1 and 2 epochs: a promoted trial continues from its checkpoint in a later wave
TRIALS, MAX_CONCURRENT, MAX_EPOCHS = 4, 2, 2


def _trainings(search: int) -> dict[str, orm.WorkChainNode]:
    """The search's training work chains by call link label (``trial_N_epochs_E``)."""
    links = orm.load_node(search).base.links.get_outgoing(node_class=orm.WorkChainNode).all()
    return {link.link_label: link.node for link in links if link.node.process_class is TrainWorkChain}


def _state(pk: int) -> str | None:
    query = orm.QueryBuilder().append(orm.ProcessNode, filters={"id": pk}, project="attributes.process_state")
    return query.one()[0]


def _first_wave_jobs(search: int) -> dict[str, str] | None:
    """Once the search waits on its first wave (checkpointed after submitting it) and each of that
    wave's calculations has submitted its job: their job ids by label."""
    if _state(search) != ProcessState.WAITING.value:
        return None
    chains = _trainings(search)
    if len(chains) < MAX_CONCURRENT:
        return None
    jobs = {}
    for label, chain in chains.items():
        calcs = _calcs(chain.pk)
        job = calcs[0].base.attributes.get("job_id", None) if calcs else None
        if job is None:
            return None
        jobs[label] = job
    return jobs


def test_a_search_continues_across_a_daemon_restart_and_runs_no_trial_twice(
    started_daemon_client, cgcnn_code, dataset_node
):
    client = started_daemon_client
    builder = builder_for(cgcnn_code, dataset_node, trials=TRIALS, max_epochs=MAX_EPOCHS)
    builder.training.train.metadata.options.max_wallclock_seconds = 600
    search = submit(builder).pk

    seen: dict[str, dict[str, str] | None] = {"jobs": None}

    def first_wave() -> bool:
        seen["jobs"] = _first_wave_jobs(search)
        return seen["jobs"] is not None

    _wait(first_wave, 600, "the search's first wave of jobs", client)
    before = seen["jobs"]
    assert before is not None and len(before) == MAX_CONCURRENT
    stop_daemon_with_its_broker(client)
    restarted = time.time()
    # stopped in the middle of the search, which waits on its trainings
    assert _state(search) == ProcessState.WAITING.value
    unfinished = [label for label, chain in _trainings(search).items() if not _all_terminated([chain.pk])]
    print(f"daemon stopped with {sorted(unfinished)} of the first wave {sorted(before)} unfinished")
    start_daemon_with_its_broker(client)

    _wait(lambda: _all_terminated([search]), 900, "the search to finish", client)
    node = orm.load_node(search)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    # no trial run twice: one training work chain per (trial, epochs), each with one calculation
    records = json.loads(node.outputs.study.get_content("r"))["records"]
    chains = _trainings(search)
    labels = [link.link_label for link in node.base.links.get_outgoing(node_class=orm.WorkChainNode).all()]
    assert len(labels) == len(set(labels)) == len(chains) == sum(len(r["pks"]) for r in records)
    assert sorted(c.pk for c in chains.values()) == sorted(pk for r in records for pk in r["pks"])
    for label, chain in chains.items():
        (calc,) = _calcs(chain.pk)
        assert chain.is_finished_ok and calc.is_finished_ok, (label, chain.exit_status, calc.exit_status)
    # the first wave's calculations were re-attached to the jobs submitted before the restart
    for label, job in before.items():
        assert _calcs(chains[label].pk)[0].get_job_id() == job, label
    # and the restarted daemon went on with the search: later waves launched after the restart
    for label, chain in sorted(chains.items(), key=lambda item: item[1].ctime):
        when = chain.ctime.timestamp() - restarted
        print(f"{label:<18} {chain.process_label}<{chain.pk}> created {when:+7.1f} s from the restart")
    later = [label for label, chain in chains.items() if chain.ctime.timestamp() > restarted]
    assert later and not set(later) & set(before), (later, sorted(before))

    # the outputs are whole: every trial in the table and the summary, each complete or pruned
    assert len(records) == TRIALS and {r["state"] for r in records} <= {"complete", "pruned"}
    rows = list(csv.DictReader(io.StringIO(node.outputs.trials.get_content())))
    assert [int(r["trial"]) for r in rows] == list(range(TRIALS))
    assert [r["state"] for r in rows] == [r["state"] for r in records]
    summary = node.outputs.summary.get_dict()
    assert sum(summary["states"].values()) == TRIALS and summary["states"].get("complete", 0) >= 1
    assert node.outputs.test_errors["n"] == 8
