"""The ``aiida-cgcnn`` command end to end: dataset create/info, train, predict, exit codes, status.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiida_cgcnn.predict import Predictor, read_predictions_csv
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.cli.helpers import cli, read_csv, skipped_ids, status, write_config


@pytest.fixture(scope="module")
def jarvis_npz(jarvis_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    path = out / "jarvis.npz"
    run = cli(
        "dataset",
        "create",
        jarvis_dir,
        "-o",
        path,
        "--skip-invalid",
        "--unit",
        "eV",
        "--target-name",
        "optb88vdw_bandgap",
    )
    assert run.returncode == 0, run.stderr
    assert "Wrote 49 structures" in run.stdout
    return path


@pytest.fixture(scope="module")
def trained(jarvis_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    config = write_config(out / "config.json", train={"batch_size": 16})
    run = cli(
        "train",
        jarvis_npz,
        "-o",
        out / "run",
        "--config",
        config,
        "--epochs",
        "2",
        "--seed",
        "1",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    return out / "run"


def test_dataset_create_and_info(jarvis_dir, jarvis_npz):
    skipped = jarvis_npz.with_suffix(".skipped.txt")
    assert skipped_ids(skipped) == ["POSCAR-JVASP-21210.vasp"]
    assert "noble-gas" in skipped.read_text()
    dataset = CrystalDataset.load(jarvis_npz)
    assert len(dataset) == 49 and dataset.units == ["eV"] and dataset.target_names == ["optb88vdw_bandgap"]
    info = cli("dataset", "info", jarvis_npz)
    assert info.returncode == 0, info.stderr
    header = json.loads(info.stdout)
    assert header["size"] == 49 and header["format"] == "aiida-cgcnn-dataset"
    assert header["units"] == ["eV"] and header["structure_sha256"] == dataset.structure_hash()


def test_dataset_create_without_skip_invalid_fails_naming_the_structure(jarvis_dir, tmp_path):
    run = cli("dataset", "create", jarvis_dir, "-o", tmp_path / "d.npz")
    assert run.returncode == 4
    assert "POSCAR-JVASP-21210.vasp" in run.stderr and "--skip-invalid" in run.stderr
    assert not (tmp_path / "d.npz").exists()
    assert status(tmp_path)["status"] == "invalid_input"
    assert "POSCAR-JVASP-21210.vasp" in status(tmp_path)["message"]


def test_train_writes_all_outputs(trained, jarvis_npz):
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "learning_curve.csv",
        "test_predictions.csv",
        "status.json",
        "skipped.txt",
    ):
        assert (trained / name).is_file(), name
    st = status(trained)
    assert st["status"] == "completed" and st["exit_code"] == 0 and st["stopped_reason"] == "completed"
    assert st["skipped"] == [] and (trained / "skipped.txt").read_text() == ""
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == 49
    assert (metrics["num_train"], metrics["num_val"], metrics["num_test"]) == (29, 10, 10)
    assert metrics["units"] == ["eV"]
    assert len(read_csv(trained / "learning_curve.csv")) == 2
    test_rows = read_csv(trained / "test_predictions.csv")
    assert len(test_rows) == 10
    assert set(test_rows[0]) == {"id", "optb88vdw_bandgap_true", "optb88vdw_bandgap_pred"}
    predictor = Predictor.from_checkpoint(trained / "best.pt")
    assert predictor.model.embedding.out_features == 16  # the --config model section was used
    assert predictor.units == ["eV"]
    # the graph cache went next to the output directory
    assert list((trained.parent / ".graph-cache").glob("graphs-*.npz"))


def test_predict_dataset_file_in_input_order(trained, jarvis_npz, tmp_path):
    out = tmp_path / "pred.csv"
    run = cli("predict", trained / "best.pt", jarvis_npz, "-o", out)
    assert run.returncode == 0, run.stderr
    rows = read_csv(out)
    dataset = CrystalDataset.load(jarvis_npz)
    assert [r["id"] for r in rows] == dataset.ids.tolist()
    expected = Predictor.from_checkpoint(trained / "best.pt").predict(dataset).values[:, 0]
    np.testing.assert_allclose([float(r["optb88vdw_bandgap_pred"]) for r in rows], expected, rtol=1e-6)
    np.testing.assert_allclose([float(r["optb88vdw_bandgap_true"]) for r in rows], dataset.targets[:, 0])
    units, parsed = read_predictions_csv(out)  # the package's reader: units per column, numbers as floats
    assert units == {"id": "", "optb88vdw_bandgap_pred": "eV", "optb88vdw_bandgap_true": "eV"}
    assert [r["optb88vdw_bandgap_true"] for r in parsed] == dataset.targets[:, 0].tolist()
    assert status(tmp_path)["status"] == "completed"


def test_predict_structure_files_in_input_order(trained, jarvis_dir, jarvis_npz, tmp_path):
    names = ["POSCAR-JVASP-97570.vasp", "POSCAR-JVASP-10.vasp", "POSCAR-JVASP-1372.vasp"]
    out = tmp_path / "pred.csv"
    run = cli("predict", trained / "best.pt", *[jarvis_dir / n for n in names], "-o", out)
    assert run.returncode == 0, run.stderr
    rows = read_csv(out)
    assert [r["id"] for r in rows] == [n.removesuffix(".vasp") for n in names]  # stems, as in Python
    assert set(rows[0]) == {"id", "optb88vdw_bandgap_pred"}  # no targets for bare structure files
    units, _ = read_predictions_csv(out)
    assert units == {"id": "", "optb88vdw_bandgap_pred": "eV"}
    dataset = CrystalDataset.load(jarvis_npz)
    by_id = dict(
        zip(
            dataset.ids.tolist(),
            Predictor.from_checkpoint(trained / "best.pt").predict(dataset).values[:, 0],
            strict=True,
        )
    )
    np.testing.assert_allclose(
        [float(r["optb88vdw_bandgap_pred"]) for r in rows], [by_id[n] for n in names], rtol=1e-5
    )


def test_predict_data_directory_with_skip_invalid(trained, jarvis_dir, tmp_path):
    out = tmp_path / "pred.csv"
    run = cli("predict", trained / "best.pt", jarvis_dir, "-o", out, "--skip-invalid")
    assert run.returncode == 0, run.stderr
    assert len(read_csv(out)) == 49
    assert skipped_ids(out.with_suffix(".skipped.txt")) == ["POSCAR-JVASP-21210.vasp"]
    assert [s["id"] for s in status(tmp_path)["skipped"]] == ["POSCAR-JVASP-21210.vasp"]


def test_site_pooling_and_sites_file(toy_dir, site_model, tmp_path):
    run_dir = site_model.parent
    assert not (run_dir / "test_predictions.csv").exists()  # --split 1 0 0: an empty test set
    assert json.loads((run_dir / "metrics.json").read_text())["num_train"] == 9
    out = tmp_path / "pred.csv"
    sites = tmp_path / "sites.csv"
    run = cli("predict", site_model, toy_dir.path, "-o", out, "--sites", sites)
    assert run.returncode == 0, run.stderr
    predictions = {r["id"]: float(r["target_pred"]) for r in read_csv(out)}
    assert list(predictions) == toy_dir.valid
    per_site: dict[str, list[float]] = {}
    for row in read_csv(sites):
        per_site.setdefault(row["id"], []).append(float(row["target"]))
    dataset = CrystalDataset.from_cgcnn_directory(toy_dir.path)[0]
    for sid, n_atoms in zip(dataset.ids, dataset.num_atoms, strict=True):
        assert len(per_site[sid]) == n_atoms
        assert np.mean(per_site[sid]) == pytest.approx(predictions[sid], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--no-such-option"),
        ("predict",),
        ("train",),
        ("train", ".", "--pooling", "max"),
        ("dataset", "info", "/no/such/file.npz"),
        ("frobnicate",),
        ("train", ".", "--epochs", "many"),
    ],
)
def test_usage_errors_exit_2(args, tmp_path):
    run = cli(*args, cwd=tmp_path)
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Usage" in run.stderr or "Error" in run.stderr


def test_predict_with_a_file_that_is_not_a_checkpoint(tmp_path, jarvis_dir):
    fake = tmp_path / "model.pt"
    fake.write_text("definitely not a checkpoint")
    out = tmp_path / "out" / "pred.csv"
    run = cli("predict", fake, jarvis_dir / "POSCAR-JVASP-10.vasp", "-o", out)
    assert run.returncode == 4
    assert "model.pt" in run.stderr and "checkpoint" in run.stderr
    assert "Traceback" not in run.stderr
    st = status(out.parent)
    assert st["status"] == "invalid_input" and st["exit_code"] == 4 and "checkpoint" in st["message"]
    assert not out.exists()


@pytest.mark.slow
def test_time_budget_exits_3_and_resumes(toy_dir, tmp_path):
    budget, margin = 14.0, 7.0  # the set-up (graphs, model, optimizer) takes seconds, within the budget
    config = write_config(tmp_path / "config.json")
    run = cli(
        "train",
        toy_dir.path,
        "-o",
        tmp_path / "run",
        "--config",
        config,
        "--epochs",
        "100000",
        "--time-budget",
        str(budget),
        "--time-margin",
        str(margin),
        "--workers",
        "1",
    )
    assert run.returncode == 3, run.stderr
    st = status(tmp_path / "run")
    assert st["status"] == "time_budget" and st["exit_code"] == 3 and "--resume" in st["message"]
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"]
    times = [float(r["time_s"]) for r in read_csv(tmp_path / "run" / "learning_curve.csv")]
    assert len(times) == epochs >= 1
    if epochs > 1:
        # the last epoch started only because 1.2 x the longest epoch before it still fitted in budget -
        # margin after the epochs before it (the budget also covers loading and set-up: room to spare)
        assert sum(times[:-1]) + 1.2 * max(times[:-1]) <= budget - margin
    # training ended inside budget - margin: from skipped.json, written as the epochs start (after the
    # set-up, which the budget covers too), to last.pt, rewritten as each epoch ends
    started = (tmp_path / "run" / "skipped.json").stat().st_mtime
    assert (tmp_path / "run" / "last.pt").stat().st_mtime - started <= budget - margin
    run = cli(
        "train",
        toy_dir.path,
        "-o",
        tmp_path / "run2",
        "--resume",
        tmp_path / "run" / "last.pt",
        "--workers",
        "1",
    )
    assert run.returncode == 3, run.stderr
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["epochs_run"] > epochs


def test_diverging_training_exits_5(toy_dir, tmp_path):
    config = write_config(tmp_path / "config.json")
    run = cli(
        "train",
        toy_dir.path,
        "-o",
        tmp_path / "run",
        "--config",
        config,
        "--epochs",
        "3",
        "--lr",
        "1e6",
        "--workers",
        "1",
    )
    assert run.returncode == 5, run.stderr
    st = status(tmp_path / "run")
    assert st["status"] == "diverged" and st["exit_code"] == 5 and "learning rate" in st["message"]


def test_bad_config_file_exits_4(toy_dir, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"modle": {"atom_fea_len": 8}}))
    run = cli("train", toy_dir.path, "-o", tmp_path / "run", "--config", bad)
    assert run.returncode == 4
    assert "modle" in run.stderr and "Traceback" not in run.stderr
    assert status(tmp_path / "run")["status"] == "invalid_input"


def test_module_entry_point_for_torchrun():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "aiida_cgcnn.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "train" in run.stdout and "predict" in run.stdout
    version = subprocess.run(
        [sys.executable, "-m", "aiida_cgcnn.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and "0.1.0" in version.stdout
