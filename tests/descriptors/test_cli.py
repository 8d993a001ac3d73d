"""The descriptor commands through the installed ``aiida-cgcnn`` executable: files, exit codes, messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aiida_cgcnn.descriptors.baseline import random_forest_baseline, split_from_checkpoint
from aiida_cgcnn.descriptors.hybrid import attach_descriptors
from aiida_cgcnn.descriptors.importance import hybrid_feature_importance
from aiida_cgcnn.descriptors.probe import learnability_probe
from aiida_cgcnn.training.dataset import CrystalDataset, load_dataset
from aiida_cgcnn.training.trainer import split_indices
from tests.cli.helpers import cli, read_csv, status, write_config
from tests.datadirs import write_valid_directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_valid_directory(tmp_path_factory.mktemp("descriptor-cli") / "data", n=12)


@pytest.fixture(scope="module")
def with_own(data_dir, tmp_path_factory):
    """The directory's structures with three descriptors and one feature of the user's own."""
    out = tmp_path_factory.mktemp("with-own")
    own = out / "own.csv"
    own.write_text("id,pressure\n" + "".join(f"{sid},{k * 0.1}\n" for k, sid in enumerate(data_dir.valid)))
    run = cli(
        "descriptors",
        data_dir.path,
        "-o",
        out / "data.npz",
        "--names",
        "vpa,crys_sys,mean_CN_Voronoi",
        "--features",
        own,
        "--table",
        out / "table.csv",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    return out


def test_descriptors_command_writes_dataset_and_table(with_own):
    data = CrystalDataset.load(with_own / "data.npz")
    assert data.feature_names[:2] == ["mean_CN_Voronoi", "vpa"] and data.feature_names[-1] == "pressure"
    assert data.metadata["descriptors"]["names"] == ["mean_CN_Voronoi", "vpa", "crys_sys"]
    rows = read_csv(with_own / "table.csv")
    assert list(rows[0]) == ["id", "mean_CN_Voronoi", "vpa", "crys_sys"]
    assert {row["crys_sys"] for row in rows} == {"1"}  # rock salt, CsCl and fcc are cubic
    assert np.allclose([float(r["vpa"]) for r in rows], data.features[:, 1])


def test_train_predict_with_descriptors(with_own, data_dir, tmp_path):
    config = write_config(tmp_path / "config.json")
    run = cli(
        "train",
        with_own / "data.npz",
        "-o",
        tmp_path / "run",
        "--config",
        config,
        "--epochs",
        "2",
        "--descriptors",
        "vpa,crys_sys",
        "--workers",
        "1",
    )
    assert run.returncode == 0, run.stderr
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert state["feature_names"][0] == "vpa" and state["feature_names"][-1] == "pressure"
    # the dataset file has every feature stored
    run = cli("predict", tmp_path / "run" / "best.pt", with_own / "data.npz", "-o", tmp_path / "p.csv")
    assert run.returncode == 0, run.stderr
    # structure files lack the user's own feature: invalid input, named
    files = [data_dir.path / f"{sid}.cif" for sid in data_dir.valid[:2]]
    run = cli("predict", tmp_path / "run" / "best.pt", *files, "-o", tmp_path / "q.csv")
    assert run.returncode == 4 and "pressure" in run.stderr


def test_descriptors_only_model_predicts_structure_files(data_dir, tmp_path):
    # a split seed of its own: the baseline's default split would be another
    config = write_config(tmp_path / "config.json", descriptors="vpa,natoms", train={"seed": 5})
    run = cli(
        "train", data_dir.path, "-o", tmp_path / "run", "--config", config, "--epochs", "2", "--workers", "1"
    )
    assert run.returncode == 0, run.stderr
    files = [data_dir.path / f"{sid}.cif" for sid in data_dir.valid[:3]]
    run = cli("predict", tmp_path / "run" / "best.pt", *files, "-o", tmp_path / "p.csv")
    assert run.returncode == 0, run.stderr
    assert len(read_csv(tmp_path / "p.csv")) == 3
    run = cli(
        "baseline",
        data_dir.path,
        "-o",
        tmp_path / "rf",
        "--descriptors",
        "vpa,natoms",
        "--split-from",
        tmp_path / "run" / "best.pt",
        "--n-estimators",
        "20",
    )
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "rf" / "metrics.json").read_text())
    assert metrics["features"] == ["vpa", "natoms"] and "test" in metrics
    # the same forest as the Python API on the same inputs, and metrics that are its predictions'
    dataset, _ = attach_descriptors(load_dataset(data_dir.path)[0], "vpa,natoms", workers=1)
    split = split_from_checkpoint(tmp_path / "run" / "best.pt", dataset)
    api = random_forest_baseline(dataset, split, n_estimators=20)
    for key in ("mae", "rmse", "r2", "mae_over_mad"):
        assert metrics["test"][key] == pytest.approx(api.metrics["test"][key], rel=1e-12), key
    rows = read_csv(tmp_path / "rf" / "test_predictions.csv")
    assert [r["id"] for r in rows] == dataset.ids[split["test"]].tolist()
    assert split["test"].tolist() != split_indices(len(dataset), 0.6, 0.2, 0.2, 0)["test"].tolist()
    predicted = np.array([float(r["target_pred"]) for r in rows])
    true = np.array([float(r["target_true"]) for r in rows])
    np.testing.assert_allclose(predicted, api.test_predictions[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(true, dataset.targets[split["test"], 0])
    assert metrics["test"]["mae"] == pytest.approx(np.abs(predicted - true).mean(), rel=1e-12)
    assert f"mae {api.metrics['test']['mae']:.4g}" in run.stdout

    run = cli(
        "importance",
        tmp_path / "run" / "best.pt",
        data_dir.path,
        "-o",
        tmp_path / "imp",
        "--n-estimators",
        "20",
    )
    assert run.returncode == 0, run.stderr
    api = hybrid_feature_importance(
        tmp_path / "run" / "best.pt", load_dataset(data_dir.path)[0], n_estimators=20, workers=1
    )
    rows = read_csv(tmp_path / "imp" / "importance.csv")
    assert [r["feature"] for r in rows] == api.feature_names and api.feature_names[-2:] == ["vpa", "natoms"]
    importances = np.array([float(r["target"]) for r in rows])
    np.testing.assert_allclose(importances, api.importances["target"], rtol=1e-5, atol=1e-7)
    assert importances.sum() == pytest.approx(1.0, abs=1e-4)
    share = api.descriptor_share["target"]
    assert share == pytest.approx(importances[-2:].sum(), abs=1e-4)
    assert f"target: descriptors carry {share:.1%} of the importance" in run.stdout


def test_probe_command(data_dir, tmp_path):
    run = cli(
        "probe",
        data_dir.path,
        "-o",
        tmp_path / "probe",
        "--descriptors",
        "vpa,density",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--split",
        "0.6",
        "0.2",
        "0.2",
    )
    assert run.returncode == 0, run.stderr
    rows = read_csv(tmp_path / "probe" / "probe.csv")
    assert [row["descriptor"] for row in rows] == ["density", "vpa"]
    assert status(tmp_path / "probe")["status"] == "completed"
    # the Python API on the same inputs gives the same numbers
    dataset = load_dataset(data_dir.path, require_targets=False)[0]
    train = {"epochs": 1, "batch_size": 64, "lr": 2e-3, "seed": 0}
    split = {"train_ratio": 0.6, "val_ratio": 0.2, "test_ratio": 0.2}
    api = learnability_probe(
        dataset,
        tmp_path / "api",
        "vpa,density",
        model_config={"pooling": "mean"},
        train_config={**train, **split},
        workers=1,
    )
    for row, expected in zip(rows, api.rows, strict=True):
        assert row["descriptor"] == expected["descriptor"]
        for key in ("r2", "mae", "mad"):
            assert float(row[key]) == pytest.approx(expected[key], rel=1e-6), (row["descriptor"], key)
        assert f"{row['descriptor']:24s} {expected['kind']:6s} R2 {expected['r2']:7.3f}" in run.stdout
    # the spread of the true volumes per atom over the test part, worked out from the cells
    test = split_indices(len(dataset), 0.6, 0.2, 0.2, 0)["test"]
    vpa = np.array([abs(np.linalg.det(dataset.lattices[k])) / dataset.num_atoms[k] for k in test])
    assert float(rows[1]["mad"]) == pytest.approx(np.abs(vpa - vpa.mean()).mean(), rel=1e-9)


def test_unknown_descriptor_is_invalid_input(data_dir, tmp_path):
    run = cli("descriptors", data_dir.path, "-o", tmp_path / "d.npz", "--names", "densty")
    assert run.returncode == 4 and "densty" in run.stderr
    assert status(tmp_path)["status"] == "invalid_input"
