"""The self-contained demo: EMT alloys, a CGCNN trained on them, predictions for unseen alloys."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from aiida_cgcnn.demo import emt_alloys, run_demo
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.dataset import CrystalDataset


def test_emt_alloys_are_reproducible_and_physical():
    structures, energies = emt_alloys(6, seed=3)
    again, energies_again = emt_alloys(6, seed=3)
    np.testing.assert_array_equal(energies, energies_again)
    assert all(len(s) == 8 for s in structures)
    np.testing.assert_allclose(structures[0].positions, again[0].positions)
    # EMT cohesive-like energies of these metals are small, negative or positive, per atom
    assert np.all(np.abs(energies) < 2.0)
    assert len(set(np.round(energies, 6))) == 6


def test_run_demo(tmp_path):
    lines = []
    test = run_demo(tmp_path, n_structures=60, epochs=3, echo=lines.append)
    dataset = CrystalDataset.load(tmp_path / "alloys.npz")
    assert len(dataset) == 60 and dataset.units == ["eV/atom"]
    structures, energies = emt_alloys(60, seed=0)
    np.testing.assert_allclose(dataset.targets[:, 0], energies, rtol=1e-12)
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["num_test"] == 12
    assert metrics["test"] == test

    # the reported test metrics, recomputed from the test predictions the run wrote
    with open(tmp_path / "train" / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    true = np.array([float(r["emt_energy_true"]) for r in rows])
    predicted = np.array([float(r["emt_energy_pred"]) for r in rows])
    index = {sid: k for k, sid in enumerate(map(str, dataset.ids))}
    np.testing.assert_allclose(true, dataset.targets[[index[r["id"]] for r in rows], 0], rtol=1e-12)
    error = predicted - true
    mad = np.mean(np.abs(true - true.mean()))
    assert test["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
    assert test["rmse"] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-9)
    assert test["mae_over_mad"] == pytest.approx(np.mean(np.abs(error)) / mad, rel=1e-9)
    assert test["r2"] == pytest.approx(1 - np.sum(error**2) / np.sum((true - true.mean()) ** 2), rel=1e-9)
    # which are the best checkpoint's predictions for those structures
    best = Predictor.from_checkpoint(tmp_path / "train" / "best.pt")
    again = best.predict([structures[index[r["id"]]] for r in rows])
    np.testing.assert_allclose(again.values[:, 0], predicted, rtol=1e-5, atol=1e-6)
    assert f"Test MAE {test['mae']:.4f} eV/atom" in "\n".join(lines)

    # the last five lines compare EMT and CGCNN for five unseen alloys, the best checkpoint's values
    new_structures, new_energies = emt_alloys(5, seed=12345)
    expected = best.predict(new_structures).values[:, 0]
    table = lines[-5:]
    for line, atoms, emt, cgcnn in zip(table, new_structures, new_energies, expected, strict=True):
        formula, true_text, predicted_text = line.split()
        assert formula == atoms.get_chemical_formula()
        assert float(true_text) == pytest.approx(emt, abs=6e-5)  # printed with four decimals
        assert float(predicted_text) == pytest.approx(cgcnn, abs=6e-5)
