"""``aiida-cgcnn search`` end to end, in real local processes: trials run two at a time, promoted ones
continue from their checkpoints, the test part is held out and evaluated once, for the best trial,
and a stopped search goes on from its ``study.json``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset

pytestmark = pytest.mark.slow

SPACE = """parameters:
  model.n_conv: {type: int, low: 1, high: 2}
  train.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search-inputs")
    structures, energies = emt_alloys(40, seed=3)
    CrystalDataset.from_structures(structures, energies)[0].save(folder / "alloys.npz")
    (folder / "space.yaml").write_text(SPACE)
    (folder / "base.json").write_text(
        json.dumps({"model": {"atom_fea_len": 8, "h_fea_len": 16}, "train": {"batch_size": 8}})
    )
    return folder


def search_command(inputs, out, *extra):
    return [
        sys.executable, "-m", "aiida_cgcnn.cli", "search", str(inputs / "alloys.npz"), "-o", str(out),
        "--space", str(inputs / "space.yaml"), "--config", str(inputs / "base.json"),
        "--min-epochs", "1", "--max-epochs", "4", "--reduction-factor", "2", "--jobs", "2", *extra,
    ]  # fmt: skip


def search(inputs, out, *extra):
    return subprocess.run(search_command(inputs, out, *extra), capture_output=True, text=True, timeout=900)


def test_a_search_runs_trials_in_parallel_processes_and_evaluates_the_test_part_once(inputs, tmp_path):
    out = tmp_path / "search"
    done = search(inputs, out, "--trials", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    state = json.loads((out / "study.json").read_text())
    records = state["records"]
    assert len(records) == 4 and all(r["state"] in ("complete", "pruned") for r in records)
    assert any(r["state"] == "complete" for r in records)

    # two at a time: some trials' segments overlap in time
    spans = [s for r in records for s in r["segments"]]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])

    # a promoted trial continued from its checkpoint: one run of 4 epochs planned from the start, paused
    # at the rungs 1 and 2, its learning curve one unbroken sequence of epochs
    complete = next(r for r in records if r["state"] == "complete")
    assert [s[2] for s in complete["segments"]] == [1, 2, 4] and list(complete["scores"]) == ["1", "2", "4"]
    folder = out / complete["directory"]
    log = (folder / "train.log").read_text()
    assert log.count("paused after") == 2 and "trained 4 epochs" in log
    with open(folder / "learning_curve.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2, 3]
    assert load_checkpoint(folder / "last.pt")["train_config"]["epochs"] == 4

    # the test part is cut off before the search: no trial saw it, the best model is evaluated once
    search_part = CrystalDataset.load(out / "data" / "search.npz")
    test_part = CrystalDataset.load(out / "data" / "test.npz")
    assert len(search_part) == 32 and len(test_part) == 8
    assert not set(map(str, search_part.ids)) & set(map(str, test_part.ids))
    assert not list(out.glob("trial-*/test_predictions.csv"))
    for trial in out.glob("trial-*"):
        assert json.loads((trial / "metrics.json").read_text())["num_test"] == 0
    summary = json.loads((out / "summary.json").read_text())
    best = min((r for r in records if r["state"] == "complete"), key=lambda r: r["value"])
    assert summary["best"]["trial"] == best["number"]
    prediction = Predictor.from_checkpoint(out / "best_model.pt").predict(test_part, workers=1)
    error = np.abs(np.asarray(prediction.values) - test_part.targets).mean()
    assert summary["best"]["test"]["mae"] == pytest.approx(error, rel=1e-9)
    assert summary["states"] == {
        s: sum(r["state"] == s for r in records) for s in ("complete", "pruned", "failed", "running")
    }
    assert summary["cpu_hours_children"] > 0
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert {"model.n_conv", "train.lr", "epochs", "val_mae", "state"} <= set(rows[0])
    assert (out / "search.png").stat().st_size > 10_000

    # run again with more trials: it goes on, the trials done are kept, not run again
    more = search(inputs, out, "--trials", "5")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "going on with the search" in more.stdout
    again = json.loads((out / "study.json").read_text())["records"]
    assert len(again) == 5 and again[:4] == records
    # the CPU time and wall time add up over the two runs
    total = json.loads((out / "summary.json").read_text())
    assert total["invocations"] == 2 and total["cpu_hours_children"] > summary["cpu_hours_children"]
    assert total["wall_time_s"] > summary["wall_time_s"]

    # other settings in the same directory: refused, naming what differs
    other = search(inputs, out, "--trials", "5", "--sampler", "random")
    assert other.returncode == 4
    assert "holds a search with other settings (sampler)" in other.stderr


def test_a_search_killed_from_outside_keeps_the_accounting_of_the_trainings_it_finished(inputs, tmp_path):
    out = tmp_path / "killed"
    command = search_command(inputs, out, "--trials", "3")
    # stderr to a file, not an unread pipe, which could fill and block the search
    with open(tmp_path / "killed.err", "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    told = []
    deadline = time.monotonic() + 600
    while not told and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            records = json.loads((out / "study.json").read_text())["records"]
        except (OSError, ValueError):  # not written yet
            continue
        told = [r for r in records if r.get("scores")]
    assert told, f"no training finished: {(tmp_path / 'killed.err').read_text()[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)  # the search and its trainings, as a lost node would
    process.wait()
    assert not (out / "summary.json").exists()
    usage = json.loads((out / "usage.json").read_text())
    assert usage["invocations"] == 1 and usage["cpu_hours"] > 0 and usage["wall_time_s"] > 0

    # going on, the killed run's figures are counted with the new run's
    more = search(inputs, out, "--trials", "3")
    assert more.returncode == 0, more.stdout + more.stderr
    total = json.loads((out / "summary.json").read_text())
    assert total["invocations"] == 2
    assert total["cpu_hours_children"] > usage["cpu_hours"] and total["wall_time_s"] > usage["wall_time_s"]
