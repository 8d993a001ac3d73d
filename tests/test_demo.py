"""The self-contained demo: EMT alloys, a CGCNN trained on them, predictions for unseen alloys."""

from __future__ import annotations

import json

import numpy as np

from aiida_cgcnn.demo import emt_alloys, run_demo
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
    assert {"mae", "rmse", "mae_over_mad", "r2"} <= set(test)
    assert np.isfinite(test["mae"])
    dataset = CrystalDataset.load(tmp_path / "alloys.npz")
    assert len(dataset) == 60 and dataset.units == ["eV/atom"]
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["num_test"] == 12
    assert metrics["test"]["mae"] == test["mae"]
    assert (tmp_path / "train" / "best.pt").is_file()
    # the last five lines compare EMT and CGCNN for five unseen alloys
    table = lines[-5:]
    assert len(table) == 5
    for line in table:
        _formula, true, predicted = line.split()
        assert np.isfinite(float(true)) and np.isfinite(float(predicted))
