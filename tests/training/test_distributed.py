"""Distributed data-parallel training with torchrun (gloo on CPU): two ranks, each on its own shard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint
from tests.builders import SMALL_MODEL
from tests.datadirs import valid_dataset

TORCHRUN = Path(sys.executable).parent / "torchrun"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not found"
    ),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable"),
]


def torchrun(*args, cwd: Path) -> subprocess.CompletedProcess:
    executable = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [executable, "--standalone", "--nproc_per_node=2", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


# 25 structures: 15 train (60/20/20), which two ranks cannot split evenly
SIZE = 25
EPOCHS = 3


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp-data") / "data.npz"
    valid_dataset(SIZE).save(path)
    return path


def test_two_ranks_train_on_disjoint_shards(dataset_file, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    run = torchrun(worker, dataset_file, tmp_path, EPOCHS, json.dumps(SMALL_MODEL), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (rank0["rank"], rank0["world"], rank1["rank"], rank1["world"]) == (0, 2, 1, 2)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    train = set(last["split"]["train"].tolist())
    assert len(train) == 15
    assert len(rank0["trained"]) == len(rank1["trained"]) == EPOCHS
    dropped = []
    for epoch, (mine, theirs) in enumerate(zip(rank0["trained"], rank1["trained"], strict=True)):
        # each structure once per epoch, on one rank only; equal shard sizes (else DDP hangs), so the
        # odd one out of the 15 is left out of this epoch
        assert len(mine) == len(set(mine)) == len(theirs) == len(set(theirs)) == 7, epoch
        assert not set(mine) & set(theirs), epoch
        left_out = train - set(mine) - set(theirs)
        assert len(left_out) == 1 and set(mine) | set(theirs) | left_out == train, epoch
        dropped += left_out
    # each epoch shuffles anew, so another structure is left out: across epochs all of them train
    assert len(set(dropped)) > 1
    assert set().union(*rank0["trained"], *rank1["trained"]) == train
    # gradients are all-reduced every step, so both ranks hold the same parameters
    assert rank0["parameters"].keys() == rank1["parameters"].keys()
    for name, value in rank0["parameters"].items():
        assert torch.equal(value, rank1["parameters"][name]), name
    # and rank 0 saved exactly those weights
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    for name, value in rank0["parameters"].items():
        assert torch.equal(value, last["state_dict"][name]), name
    assert len(last["history"]) == EPOCHS
    # training moved the weights away from their (seeded) initial values
    first_layer = rank0["parameters"]["embedding.weight"]
    torch.manual_seed(7)
    from aiida_cgcnn.graph.features import atom_feature_table
    from aiida_cgcnn.models.registry import build_model

    initial = build_model(
        {"architecture": "cgcnn", **SMALL_MODEL, "out_features": 1},
        atom_feature_table(),
    )
    assert not torch.equal(initial.embedding.weight, first_layer)


def test_cli_under_torchrun(dataset_file, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": SMALL_MODEL}))
    out = tmp_path / "out"
    run = torchrun(
        "-m",
        "aiida_cgcnn.cli",
        "train",
        dataset_file,
        "-o",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--config",
        config,
        "--workers",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("best.pt", "last.pt", "metrics.json", "learning_curve.csv", "status.json"):
        assert (out / name).is_file(), name
    # only rank 0 reports and writes
    assert (run.stdout + run.stderr).count("trained 2 epochs") == 1
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == SIZE
    history = load_checkpoint(out / "last.pt")["history"]
    assert [r["epoch"] for r in history] == [0, 1]
    values = Predictor.from_checkpoint(out / "best.pt").predict(valid_dataset(SIZE)).values
    assert values.shape == (SIZE, 1) and torch.isfinite(torch.from_numpy(values)).all()
