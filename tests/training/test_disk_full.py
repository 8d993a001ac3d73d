"""``aiida-cgcnn train`` on a disk that fills up mid-run: exit 8 (``disk_full``) with a message saying
what to do, and the checkpoints of the last epoch saved intact (they are replaced whole, never cut)."""

from __future__ import annotations

import json

import torch

from aiida_cgcnn.cli.common import EXIT_CODES, RESERVE_BYTES
from aiida_cgcnn.training.checkpoint import load_checkpoint
from tests.cli.helpers import cli, read_csv, write_config
from tests.datadirs import write_valid_directory
from tests.tmpfs import PAGE, pages, small_tmpfs


def test_a_full_disk_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    data = write_valid_directory(tmp_path / "data", n=9).path
    config = write_config(tmp_path / "config.json")
    # the graph cache off the small disk: only the run's own files fill it
    common = ("--config", config, "--seed", "3", "--workers", "1", "--no-progress")
    common += ("--cache-dir", tmp_path / "graphs")

    # one epoch on a roomy disk gives the sizes of best.pt and last.pt
    sizes = cli("train", data, "-o", tmp_path / "sizes", "--epochs", "1", *common)
    assert sizes.returncode == 0, sizes.stderr
    best, last = ((tmp_path / "sizes" / name).stat().st_size for name in ("best.pt", "last.pt"))

    # room for epoch 0 (best.pt, then last.pt beside it), skipped.json, learning_curve.csv and the
    # command's reserve, and half a best.pt more: epoch 1's first checkpoint does not fit
    size = pages(best) + pages(last) + pages(RESERVE_BYTES) + 2 * PAGE + pages(best // 2)
    with small_tmpfs(tmp_path / "disk", size) as disk:
        run = cli("train", data, "-o", disk / "run", "--epochs", "20", *common)

        assert run.returncode == EXIT_CODES["disk_full"] == 8, run.stderr
        assert "Traceback" not in run.stderr
        assert "Error [disk_full]: No space left on device writing" in run.stderr
        assert "Free space there or write elsewhere" in run.stderr and "resume from last.pt" in run.stderr
        status = json.loads((disk / "run" / "status.json").read_text())
        assert status["status"] == "disk_full" and status["exit_code"] == 8
        assert status["message"].startswith("No space left on device writing " + str(disk / "run"))

        # nothing half-written is left: no temporary file, no reserve; both checkpoints are epoch 0's
        names = sorted(p.name for p in (disk / "run").iterdir())
        assert names == ["best.pt", "last.pt", "learning_curve.csv", "skipped.json", "status.json"]
        saved_last = load_checkpoint(disk / "run" / "last.pt")  # weights_only=True
        saved_best = torch.load(disk / "run" / "best.pt", weights_only=True)
        assert saved_last["epoch"] == saved_best["epoch"] == 0 and saved_last["best_epoch"] == 0
        assert [r["epoch"] for r in saved_last["history"]] == [0]
        for key, tensor in saved_best["state_dict"].items():
            assert torch.equal(tensor, saved_last["state_dict"][key]), key
        curve = read_csv(disk / "run" / "learning_curve.csv")
        assert [r["epoch"] for r in curve] == ["0"]
        assert float(curve[0]["train_loss"]) == saved_last["history"][0]["train_loss"]

        # once there is room again the run resumes from that last.pt
        resume = ("--resume", disk / "run" / "last.pt", "--epochs", "2")
        run = cli("train", data, "-o", tmp_path / "more", *resume, *common)
        assert run.returncode == 0, run.stderr
        assert [r["epoch"] for r in read_csv(tmp_path / "more" / "learning_curve.csv")] == ["0", "1"]
