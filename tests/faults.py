"""Faults provoked for real while a calculation runs: a watcher thread waits for the first per-epoch
checkpoint of a job under a work directory, then does what the scheduler or an operator would."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from aiida import orm

from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.workflows.train import TrainWorkChain

#: a calculation's folder under the computer's work directory: <workdir>/ab/cd/<rest of the uuid>/
JOB_CHECKPOINT = "*/*/*/run/last.pt"


class OnFirstCheckpoint(threading.Thread):
    """Polls ``workdir`` for the first job's ``run/last.pt`` (renamed into place whole, so its presence
    means a complete epoch), then calls ``action(job_folder)`` once. Gives up after ``timeout`` s;
    ``fired`` tells whether the action ran and ``error`` what it raised."""

    def __init__(self, workdir: Path, action: Callable[[Path], None], timeout: float = 300.0) -> None:
        super().__init__(daemon=True)
        self.workdir, self.action, self.timeout = workdir, action, timeout
        self.fired = False
        self.job: Path | None = None
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.stopped.is_set() and time.monotonic() < deadline:
            found = sorted(self.workdir.glob(JOB_CHECKPOINT))
            if found:
                self.job = found[0].parents[1]
                try:
                    self.action(self.job)
                    self.fired = True
                except BaseException as error:  # reported by the test, not lost in the thread
                    self.error = error
                return
            self.stopped.wait(0.1)

    def __enter__(self) -> OnFirstCheckpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(timeout=30)


def command_processes(job: Path) -> list[int]:
    """PIDs of the ``aiida-cgcnn`` command running in the job folder ``job`` (its working directory;
    the shell that runs the job script is left alone)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").resolve()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours to look at
            continue
        if cwd == job.resolve() and b"--output-dir" in argv:
            pids.append(int(entry.name))
    return pids


def terminate_command(job: Path) -> None:
    """SIGTERM to the command of ``job``, as a scheduler cancelling the job sends it."""
    pids = command_processes(job)
    if not pids:
        raise RuntimeError(f"no aiida-cgcnn command runs in {job}: it ended before it could be cancelled")
    for pid in pids:
        os.kill(pid, signal.SIGTERM)


# --- a training cancelled mid-run, and the same training uninterrupted ---------------------------

#: enough epochs that the job is still training when the first checkpoint has been seen
EPOCHS = 40


def deterministic_training(small_model):
    """``EPOCHS`` seeded epochs in deterministic mode: the same weights whenever they run."""
    train = {"epochs": EPOCHS, "batch_size": 8, "seed": 1, "deterministic": True}
    return {"model": small_model, "train": train}


def chain(code, dataset, parameters, max_iterations=3, **options):
    """A TrainWorkChain of the training ``parameters``, with these ``metadata.options``."""
    builder = TrainWorkChain.get_builder()
    builder.train.code = code
    builder.train.dataset = dataset
    builder.train.parameters = orm.Dict(parameters)
    builder.train.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    for key, value in options.items():
        builder.train.metadata.options[key] = value
    builder.max_iterations = orm.Int(max_iterations)
    return builder


def assert_same_training(resumed, straight):
    """The same final model, bit for bit, and the same learning curve epoch for epoch (but the wall
    time of each epoch)."""
    a, b = straight.outputs.model.get_checkpoint(), resumed.outputs.model.get_checkpoint()
    assert (a["epoch"], a["best_epoch"]) == (b["epoch"], b["best_epoch"])  # best.pt: the best epoch's
    assert resumed.outputs.metrics["last_epoch"] == straight.outputs.metrics["last_epoch"] == EPOCHS - 1
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    curve, reference = resumed.outputs.learning_curve, straight.outputs.learning_curve
    assert sorted(curve.get_arraynames()) == sorted(reference.get_arraynames())
    for name in reference.get_arraynames():
        if name != "time_s":
            np.testing.assert_array_equal(curve.get_array(name), reference.get_array(name), err_msg=name)
    assert len(curve.get_array("epoch")) == EPOCHS
    assert resumed.outputs.metrics["test"] == straight.outputs.metrics["test"]


def assert_resumed_from_the_cancelled_job(node, marker):
    """The first calculation was cancelled mid-run with a checkpoint saved; the next resumed from it."""
    cancelled, resumed = sorted(node.called, key=lambda n: n.ctime)
    assert cancelled.exit_status == TrainCalculation.exit_codes.ERROR_SCHEDULER_JOB_CANCELLED.status == 170
    assert marker in cancelled.exit_message
    assert (
        resumed.is_finished_ok and resumed.inputs.parent_folder.uuid == cancelled.outputs.remote_folder.uuid
    )
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any("cancelled by the scheduler: resuming from its last checkpoint" in r for r in reports)
    # the resumed job began after the epochs the cancelled one had saved: at least one, not all
    saved = torch.load(cancelled.outputs.remote_folder.get_remote_path() + "/run/last.pt", weights_only=True)
    assert 1 <= len(saved["history"]) < EPOCHS
    np.testing.assert_array_equal(
        resumed.outputs.learning_curve.get_array("train_loss")[: len(saved["history"])],
        [record["train_loss"] for record in saved["history"]],
    )
