"""The descriptors-only baseline: a random forest on the descriptors, on the trainer's split."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from aiida_cgcnn.descriptors.baseline import random_forest_baseline, split_from_checkpoint
from aiida_cgcnn.descriptors.hybrid import attach_descriptors, drop_features
from aiida_cgcnn.errors import DatasetError
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL as SMALL
from tests.descriptors.helpers import fcc_hcp_dataset, generated_dataset


def test_forest_learns_from_descriptors_on_the_trainers_split(tmp_path):
    data, _ = attach_descriptors(fcc_hcp_dataset(30), "all")
    result = Trainer(
        data,
        tmp_path / "gnn",
        model_config=SMALL,
        train_config={"epochs": 1, "batch_size": 16},
        workers=1,
        progress=False,
    ).fit()
    split = split_from_checkpoint(result.best_checkpoint, data)
    baseline = random_forest_baseline(data, split, n_estimators=100, output_dir=tmp_path / "rf")
    with open(tmp_path / "gnn" / "test_predictions.csv", newline="") as handle:
        gnn_ids = [row["id"] for row in csv.DictReader(handle)]
    with open(tmp_path / "rf" / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == gnn_ids
    # natoms and the lattice separate fcc from hcp, the neighbour distance sets the scale
    test = baseline.metrics["test"]
    assert test["mae_over_mad"] < 0.15, test
    assert test["per_target"]["natoms_times_d"]["mae"] == pytest.approx(test["mae"])
    # the default split is the trainer's split for the same seed and ratios
    again = random_forest_baseline(data, None, n_estimators=10)
    assert np.array_equal(again.test_indices, split["test"])


def test_classification_forest():
    data, _ = attach_descriptors(generated_dataset(40, target="system"), "natoms,vpa")
    result = random_forest_baseline(data, n_estimators=50)
    assert result.metrics["test"]["accuracy"] == 1.0  # natoms is the class
    assert result.test_predictions.shape == (8, 2)


def test_forest_needs_features():
    with pytest.raises(DatasetError, match="no features"):
        random_forest_baseline(drop_features(generated_dataset(10)))
