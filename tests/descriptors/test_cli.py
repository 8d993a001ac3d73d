"""The descriptor commands through the installed ``aiida-cgcnn`` executable: files, exit codes, messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aiida_cgcnn.training.dataset import CrystalDataset
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
    config = write_config(tmp_path / "config.json", descriptors="vpa,natoms")
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
    assert "descriptors carry" in run.stdout and (tmp_path / "imp" / "importance.csv").is_file()


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
    assert [row["descriptor"] for row in read_csv(tmp_path / "probe" / "probe.csv")] == ["density", "vpa"]
    assert status(tmp_path / "probe")["status"] == "completed"


def test_unknown_descriptor_is_invalid_input(data_dir, tmp_path):
    run = cli("descriptors", data_dir.path, "-o", tmp_path / "d.npz", "--names", "densty")
    assert run.returncode == 4 and "densty" in run.stderr
    assert status(tmp_path)["status"] == "invalid_input"
