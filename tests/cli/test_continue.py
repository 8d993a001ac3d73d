"""``train --resume last.pt --epochs N``: a finished run goes on for more epochs; settings that would
make another run are refused, naming them."""

from __future__ import annotations

import json

from tests.cli.helpers import cli, read_csv, status, write_config


def test_a_finished_run_continues_for_more_epochs(toy_dir, tmp_path):
    config = write_config(tmp_path / "config.json")
    common = ("--workers", "1", "--no-progress")
    run = cli("train", toy_dir.path, "-o", tmp_path / "run", "--config", config, "--epochs", "2", *common)
    assert run.returncode == 0, run.stderr
    first = read_csv(tmp_path / "run" / "learning_curve.csv")
    assert [r["epoch"] for r in first] == ["0", "1"]

    more = ("train", toy_dir.path, "--resume", tmp_path / "run" / "last.pt", "--epochs", "4", *common)
    run = cli(*more, "-o", tmp_path / "more")
    assert run.returncode == 0, run.stderr
    curve = read_csv(tmp_path / "more" / "learning_curve.csv")
    assert [r["epoch"] for r in curve] == ["0", "1", "2", "3"]
    assert [r["train_loss"] for r in curve[:2]] == [r["train_loss"] for r in first]
    metrics = json.loads((tmp_path / "more" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["stopped_reason"] == "completed"

    # the same config given again is no change; another model is another run
    run = cli(*more, "--config", config, "-o", tmp_path / "same")
    assert run.returncode == 0, run.stderr
    run = cli(*more, "--model", "alignn", "-o", tmp_path / "other")
    assert run.returncode == 4 and "Traceback" not in run.stderr
    assert "cannot resume" in run.stderr and "model architecture 'cgcnn' -> 'alignn'" in run.stderr
    assert status(tmp_path / "other")["status"] == "invalid_input"
