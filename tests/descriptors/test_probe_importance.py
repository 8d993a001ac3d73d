"""The learnability probe (Fig. 2) and the feature importance of a hybrid model (Fig. 4)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import r2_score

from aiida_cgcnn.descriptors.baseline import split_from_checkpoint
from aiida_cgcnn.descriptors.hybrid import attach_descriptors
from aiida_cgcnn.descriptors.importance import crystal_representations, hybrid_feature_importance
from aiida_cgcnn.descriptors.probe import learnability_probe
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL as SMALL
from tests.descriptors.helpers import fcc_hcp_dataset, generated_dataset


def test_probe_reports_r2_per_descriptor(tmp_path):
    data = generated_dataset(48, seed=2)
    result = learnability_probe(
        data,
        tmp_path,
        "vpa,natoms,a,crys_sys",
        model_config=SMALL,
        train_config={"epochs": 30, "batch_size": 8, "lr": 5e-3},
        workers=1,
    )
    r2 = result.r2()
    assert list(r2) == ["vpa", "natoms", "a"]  # numeric descriptors; crys_sys is classified
    assert all(np.isfinite(v) for v in r2.values())
    assert r2["vpa"] > 0.5, r2  # the volume per atom follows from the bond lengths the graph holds
    assert result.crys_sys_accuracy == 1.0  # every generated crystal is cubic
    rows = list(csv.DictReader(open(tmp_path / "probe.csv", newline="")))
    assert [row["kind"] for row in rows] == ["global"] * 3
    # R² of the joint run's own test predictions (scikit-learn), whose true values are the descriptors
    # worked out from the cells
    with open(tmp_path / "joint" / "test_predictions.csv", newline="") as handle:
        tests = [r for r in csv.DictReader(handle) if r["id"] != "# units"]
    cells = {sid: k for k, sid in enumerate(data.ids)}
    for name in ("vpa", "natoms"):
        true = np.array([float(r[f"{name}_true"]) for r in tests])
        predicted = np.array([float(r[f"{name}_pred"]) for r in tests])
        assert r2[name] == pytest.approx(r2_score(true, predicted), rel=1e-9), name
        assert float(next(row for row in rows if row["descriptor"] == name)["r2"]) == pytest.approx(r2[name])
    for r in tests:
        k = cells[r["id"]]
        assert float(r["natoms_true"]) == data.num_atoms[k]
        volume = abs(np.linalg.det(data.lattices[k]))
        assert float(r["vpa_true"]) == pytest.approx(volume / data.num_atoms[k], rel=1e-9)
    assert json.loads((tmp_path / "probe.json").read_text())["structures"] == 48
    assert (tmp_path / "probe.png").stat().st_size > 1000


def test_probe_separate_mode(tmp_path):
    result = learnability_probe(
        generated_dataset(16),
        tmp_path,
        "vpa,density",
        mode="separate",
        model_config=SMALL,
        train_config={"epochs": 1, "batch_size": 8},
        workers=1,
    )
    assert sorted(result.runs) == ["density", "vpa"]
    with pytest.raises(ValueError, match="mode"):
        learnability_probe(generated_dataset(16), tmp_path, "vpa", mode="both")


def test_importance_finds_the_descriptor_the_model_needs(tmp_path):
    """fcc/hcp pairs: the learned vectors cannot tell the pair apart, natoms can, so the forest on
    [learned ⊕ descriptors] leans on natoms."""
    data, _ = attach_descriptors(fcc_hcp_dataset(30), "natoms,vpa")
    result = Trainer(
        data,
        tmp_path / "run",
        model_config=SMALL,
        train_config={
            "epochs": 60,
            "batch_size": 4,
            "lr": 5e-3,
            "train_ratio": 0.5,
            "val_ratio": 0.25,
            "test_ratio": 0.25,
        },
        workers=1,
        progress=False,
    ).fit()
    importance = hybrid_feature_importance(
        result.best_checkpoint, data, tmp_path / "importance", n_estimators=200
    )
    values = importance.importances["natoms_times_d"]
    assert importance.feature_names[-2:] == ["vpa", "natoms"]
    assert importance.feature_names[int(np.argmax(values))] == "natoms"
    assert importance.descriptor_share["natoms_times_d"] > 0.5
    assert (tmp_path / "importance" / "importance.png").is_file()
    summary = json.loads((tmp_path / "importance" / "importance.json").read_text())
    assert summary["learned_size"] == SMALL["atom_fea_len"]
    assert summary["descriptor_share"]["natoms_times_d"] == pytest.approx(values[-2:].sum(), rel=1e-12)
    with open(tmp_path / "importance" / "importance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["feature"] for r in rows] == importance.feature_names
    assert [r["kind"] for r in rows] == ["learned"] * SMALL["atom_fea_len"] + ["descriptor"] * 2
    np.testing.assert_allclose([float(r["natoms_times_d"]) for r in rows], values, rtol=1e-5, atol=1e-9)
    # the forest's descriptor columns are the descriptors of each crystal, standardised on the training
    # part as the head standardises them: no column or row moved
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    _, extra, names = crystal_representations(predictor, data)
    train = split_from_checkpoint(result.best_checkpoint, data)["train"]
    for j, name in enumerate(names):
        column = data.features[:, data.feature_names.index(name)]
        expected = (column - column[train].mean()) / column[train].std()
        np.testing.assert_allclose(extra[:, j], expected, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(data.features[:, data.feature_names.index("natoms")], data.num_atoms)
