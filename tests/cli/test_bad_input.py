"""Bad input through the command: exit code 4 naming every bad structure, or with --skip-invalid exit 0,
the bad ids in skipped.txt and every valid structure used."""

from __future__ import annotations

import json

import pytest

from tests.cli.helpers import cli, read_csv, skipped_ids, status, write_config
from tests.datadirs import write_bad_directory, write_valid_directory


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    return write_bad_directory(tmp_path_factory.mktemp("bad") / "data")


def test_train_on_bad_directory_exits_4_naming_the_structures(bad_dir, tmp_path):
    config = write_config(tmp_path / "config.json")
    run = cli(
        "train", bad_dir.path, "-o", tmp_path / "run", "--config", config, "--epochs", "1", "--workers", "1"
    )
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    st = status(tmp_path / "run")
    assert st["status"] == "invalid_input" and st["exit_code"] == 4
    # every structure that fails while reading is named (graph failures come after reading succeeds)
    for sid, reason in bad_dir.bad.items():
        if sid == "lonely":
            continue
        assert f"'{sid}'" in st["message"], sid
        assert reason in st["message"], reason
        assert f"'{sid}'" in run.stderr
    assert not (tmp_path / "run" / "best.pt").exists()


def test_graph_failure_exits_4_naming_the_structure(tmp_path):
    from pymatgen.core import Lattice, Structure

    data = write_valid_directory(tmp_path / "data", n=6)
    Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]]).to(filename=str(data.path / "lonely.cif"))
    with open(data.path / "id_prop.csv", "a") as handle:
        handle.write("lonely,1.0\n")
    config = write_config(tmp_path / "config.json")
    run = cli(
        "train", data.path, "-o", tmp_path / "run", "--config", config, "--epochs", "1", "--workers", "1"
    )
    assert run.returncode == 4, run.stderr
    message = status(tmp_path / "run")["message"]
    assert "'lonely'" in message and "max-radius" in message
    # the suggested option works
    run = cli(
        "train",
        data.path,
        "-o",
        tmp_path / "run2",
        "--config",
        config,
        "--epochs",
        "1",
        "--workers",
        "1",
        "--max-radius",
        "30",
    )
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == 7


def test_train_with_skip_invalid_uses_every_valid_structure(bad_dir, tmp_path):
    config = write_config(tmp_path / "config.json")
    out = tmp_path / "run"
    run = cli(
        "train",
        bad_dir.path,
        "-o",
        out,
        "--config",
        config,
        "--epochs",
        "1",
        "--skip-invalid",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    assert sorted(skipped_ids(out / "skipped.txt")) == sorted(bad_dir.bad_ids)
    text = (out / "skipped.txt").read_text()
    for reason in bad_dir.bad.values():
        assert reason in text
    st = status(out)
    assert st["status"] == "completed"
    assert sorted(s["id"] for s in st["skipped"]) == sorted(bad_dir.bad_ids)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == len(bad_dir.valid)
    assert metrics["num_skipped"] == len(bad_dir.bad_ids)
    test_ids = [r["id"] for r in read_csv(out / "test_predictions.csv")]
    assert set(test_ids) <= set(bad_dir.valid)


def test_dataset_create_with_and_without_skip_invalid(bad_dir, tmp_path):
    run = cli("dataset", "create", bad_dir.path, "-o", tmp_path / "a" / "data.npz")
    assert run.returncode == 4
    assert status(tmp_path / "a")["status"] == "invalid_input"
    run = cli("dataset", "create", bad_dir.path, "-o", tmp_path / "b" / "data.npz", "--skip-invalid")
    assert run.returncode == 0, run.stderr
    reading_failures = [
        sid for sid in bad_dir.bad_ids if sid != "lonely"
    ]  # its graph fails later, in training
    assert sorted(skipped_ids(tmp_path / "b" / "data.skipped.txt")) == sorted(reading_failures)
    assert f"Wrote {len(bad_dir.valid) + 1} structures" in run.stdout


def test_predict_bad_structure_files(tmp_path, bad_dir, toy_dir, site_model):
    data = toy_dir
    files = [
        data.path / "good-00.cif",
        bad_dir.path / "partial.cif",
        bad_dir.path / "garbage.cif",
        data.path / "good-01.cif",
        bad_dir.path / "lonely.cif",
    ]
    out = tmp_path / "pred" / "pred.csv"
    run = cli("predict", site_model, *files, "-o", out)
    assert run.returncode == 4
    assert "'partial'" in run.stderr and "'garbage'" in run.stderr  # file stems, as in Python
    run = cli("predict", site_model, *files, "-o", out, "--skip-invalid")
    assert run.returncode == 0, run.stderr
    assert [r["id"] for r in read_csv(out)] == ["good-00", "good-01"]
    assert skipped_ids(out.with_suffix(".skipped.txt")) == ["partial", "garbage", "lonely"]


def test_empty_dataset_exits_4(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "id_prop.csv").write_text("")
    run = cli("train", tmp_path / "data", "-o", tmp_path / "run")
    assert run.returncode == 4
    assert "empty" in status(tmp_path / "run")["message"] and "Traceback" not in run.stderr
