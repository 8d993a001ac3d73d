"""``cgcnn.hyperparameter_search`` on the SLURM + sshd test cluster (core.ssh + core.slurm): its trials
run as concurrent SLURM jobs, and the first trial's first job, cancelled with ``scancel`` mid-training,
is resumed by the restart work chain while the search goes on untouched.

Each job's start and end come from the job itself: the job script writes the node's clock
(``date +%s.%N``) to its scheduler stdout before and after the training command (``prepend_text`` and
``append_text``); AiiDA retrieves that file with the job's outputs.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.training.search import Rungs, SearchStudy
from aiida_cgcnn.workflows.train import TrainWorkChain
from tests.aiida_search.test_search_workchain import SPACE, builder_for
from tests.faults import OnFirstCheckpoint, assert_resumed_from_the_cancelled_job
from tests.integration.test_slurm_ssh import _code, slurm_computer  # noqa: F401  (the cluster's computer)
from tests.services import CLUSTER

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

#: one rung: each trial is one job (the continuation from a checkpoint is the localhost test's), so 4
#: trials are 2 waves of 2 concurrent jobs; after its first checkpoint the first job still trains 63
#: epochs (over a second on an idle machine, 20 ms an epoch), time enough for scancel to land mid-run
EPOCHS, TRIALS = 64, 4
STAMPS = re.compile(r"^job-(start|end) (\d+\.\d+)", re.M)
JOB_ID = re.compile(r"^job-start \S+ (\d+)$", re.M)


@pytest.fixture(autouse=True)
def _cluster_lock():
    """Overrides tests/integration/conftest.py's shared lock: this test holds the cluster's lock
    exclusively, as the SSH-outage test does, because its two concurrent jobs need both of the cluster's
    2 CPUs (under ``-n 2`` a SLURM test of the other worker would hold one and serialize them). A job
    that an earlier test left behind (cancelled, still completing) would hold one too: the test starts on
    an empty queue."""
    if not CLUSTER.is_dir():  # the test skips (or fails under CI) by itself
        yield
        return
    with open(CLUSTER / "tests.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            _wait_for_an_empty_queue()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_an_empty_queue(deadline_s: float = 300.0) -> None:
    squeue = shutil.which("squeue")
    if squeue is None:  # the test fails on its own, without scancel
        return
    deadline = time.monotonic() + deadline_s
    while True:
        listed = subprocess.run(
            [squeue, "-h", "-o", "%i %j %T"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        if not listed:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the cluster's queue was not empty after {deadline_s:.0f} s:\n{listed}")
        time.sleep(1.0)


def _trial_0_params() -> dict[str, float]:
    """Trial 0's parameters: the search's sampler is seeded by its seed and the trial's number, so a
    study of the same settings asks the same first (the work chain's seed 0, startup trials 2)."""
    study = SearchStudy({"parameters": SPACE}, Rungs(EPOCHS, EPOCHS, 2), seed=0, n_startup_trials=2)
    return dict(study.ask()["params"])


def _is_trial(folder: Path, params: dict[str, float]) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return config["model"].get("n_conv") == params["model.n_conv"] and math.isclose(
        config["train"].get("lr", math.nan), params["train.lr"], rel_tol=1e-12
    )


def _interval(calc: orm.CalcJobNode) -> tuple[float, float] | None:
    """The job's (start, end) on the node's clock, from its scheduler stdout. A job killed before its
    script's last line has no end stamp: it ran at least until its last checkpoint was written (the
    cluster is this machine, so the file's time is on the same clock); None without a checkpoint."""
    stamps = dict(STAMPS.findall(calc.outputs.retrieved.get_object_content("_scheduler-stdout.txt")))
    if "start" not in stamps:
        return None
    if "end" in stamps:
        return float(stamps["start"]), float(stamps["end"])
    checkpoint = Path(calc.outputs.remote_folder.get_remote_path()) / "run" / "last.pt"
    return (float(stamps["start"]), checkpoint.stat().st_mtime) if checkpoint.is_file() else None


def test_search_trials_run_as_concurrent_slurm_jobs_and_a_cancelled_one_is_resumed(
    slurm_computer,  # noqa: F811
    cgcnn_executable,
    dataset_node,
    tmp_path,
):
    scancel = shutil.which("scancel")
    if scancel is None:
        pytest.fail("the SLURM test cluster runs, but this machine has no `scancel`")
    # every job of this search carries this name (squeue tells them from other tests' jobs); only trial
    # 0's first job is cancelled, by its id
    name = f"cgcnn-search-{uuid.uuid4().hex[:12]}"
    workdir = tmp_path / "remote-work"
    trial_0 = _trial_0_params()
    cancelled: list[str] = []

    def cancel_trial_0(_first: Path) -> None:
        """The first checkpoint of wave 1 (trials 0 and 1 train together) is seen: find trial 0's job
        folder, wait for its own first checkpoint and cancel that job, by its id, as an operator would."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            folders = [f.parent for f in workdir.glob("*/*/*/config.json")]
            mine = [f for f in folders if (f / "run" / "last.pt").is_file() and _is_trial(f, trial_0)]
            if mine:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"no checkpoint of trial 0 ({trial_0}) under {workdir} in 120 s")
        (folder,) = mine
        # the job wrote its id before the training began
        (job,) = JOB_ID.findall((folder / "_scheduler-stdout.txt").read_text())
        subprocess.run([scancel, job], check=True, capture_output=True, text=True, timeout=60)
        cancelled.append(job)

    code = _code(slurm_computer, cgcnn_executable)
    builder = builder_for(code, dataset_node, trials=TRIALS, min_epochs=EPOCHS, max_epochs=EPOCHS)
    options = builder.training.train.metadata.options
    options.max_wallclock_seconds = 600
    options.custom_scheduler_commands = f"#SBATCH --job-name={name}"
    # each job holds its CPU for 8 s before it trains: a loaded engine may submit a wave's second job
    # seconds after the first (4 s seen), longer than the few seconds the training itself takes
    options.prepend_text = 'echo "job-start $(date +%s.%N) $SLURM_JOB_ID"\nsleep 8'
    options.append_text = 'echo "job-end $(date +%s.%N)"'
    builder.predict.metadata.options.max_wallclock_seconds = 600
    with OnFirstCheckpoint(workdir, cancel_trial_0) as watcher:
        _, node = run_get_node(builder)
    assert watcher.error is None and watcher.fired, watcher.error
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    records = json.loads(node.outputs.study.get_content("r"))["records"]
    # one rung: a trial that is not failed is complete
    assert [r["state"] for r in records] == ["complete"] * TRIALS, [r.get("reason") for r in records]
    chains = {
        link.link_label: link.node
        for link in node.base.links.get_outgoing(node_class=orm.WorkChainNode).all()
        if link.node.process_class is TrainWorkChain
    }
    assert sorted(w.pk for w in chains.values()) == sorted(pk for r in records for pk in r["pks"])
    calcs = {
        label: sorted((c for c in w.called if c.process_class is TrainCalculation), key=lambda c: c.ctime)
        for label, w in chains.items()
    }

    # (b) trial 0's first job was cancelled (exit 170) and resumed from its checkpoint by its restart
    # work chain; the trial then went on as any other (complete, not failed)
    first = f"trial_0_epochs_{EPOCHS}"
    assert cancelled == [calcs[first][0].get_job_id()]
    assert_resumed_from_the_cancelled_job(chains[first], "CANCELLED AT")
    saved = torch.load(
        calcs[first][0].outputs.remote_folder.get_remote_path() + "/run/last.pt", weights_only=True
    )
    assert 1 <= len(saved["history"]) < EPOCHS  # cancelled mid-training, not after the rung
    assert chains[first].outputs.metrics["epochs_run"] == EPOCHS
    assert records[0]["scores"][str(EPOCHS)] == chains[first].outputs.metrics["val"]["mae"]
    # no other trial touched: every other training is one job, finished ok
    for label, jobs in calcs.items():
        if label != first:
            assert len(jobs) == 1 and jobs[0].is_finished_ok, (label, [j.exit_status for j in jobs])
    assert all(c.get_job_id() for jobs in calcs.values() for c in jobs)  # real SLURM jobs

    # (a) trials ran as concurrent SLURM jobs: two jobs of different trials overlap in time
    intervals = {
        (label, c.get_job_id()): span
        for label, jobs in calcs.items()
        for c in jobs
        if (span := _interval(c)) is not None
    }
    # every job is stamped, the cancelled one up to its last checkpoint
    assert len(intervals) == sum(len(jobs) for jobs in calcs.values())
    origin = min(start for start, _ in intervals.values())
    for (label, job), (start, end) in sorted(intervals.items(), key=lambda item: item[1]):
        print(f"job {job:>6} {label:<20} {start - origin:7.2f} s -> {end - origin:7.2f} s")
    overlaps = [
        (a, b, min(intervals[a][1], intervals[b][1]) - max(intervals[a][0], intervals[b][0]))
        for a, b in itertools.combinations(intervals, 2)
        if a[0].split("_epochs_")[0] != b[0].split("_epochs_")[0]
    ]
    for a, b, seconds in overlaps:
        if seconds > 0:
            print(f"overlap {seconds:.2f} s: {a[0]} (job {a[1]}) and {b[0]} (job {b[1]})")
    assert max(seconds for _, _, seconds in overlaps) > 1.0, overlaps
