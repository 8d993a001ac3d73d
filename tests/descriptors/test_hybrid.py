"""Hybrid models (de-CGCNN, Eq. 14): descriptors as extra inputs through the shared head, stored in the
checkpoint, computed by the Predictor for new structures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_cgcnn.descriptors import DescriptorSettings, compute_descriptors
from aiida_cgcnn.descriptors.hybrid import (
    attach_descriptors,
    attach_features,
    descriptor_values,
    model_inputs,
    select_features,
)
from aiida_cgcnn.errors import DatasetError, InvalidStructureError
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL as SMALL
from tests.builders import crystal, fcc_primitive
from tests.descriptors.helpers import fcc_hcp_dataset, generated_dataset

NAMES = "density,vpa,mean_CN_Voronoi,crys_sys"


def test_attach_reuse_and_drop():
    data = generated_dataset(12)
    hybrid, skipped = attach_descriptors(data, NAMES, workers=1)
    assert not skipped
    assert hybrid.feature_names[:3] == ["mean_CN_Voronoi", "density", "vpa"]  # local first, as in Table 3
    assert hybrid.feature_names[3:] == [
        f"crys_sys={s}"
        for s in ("cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic")
    ]
    assert hybrid.metadata["descriptors"]["names"] == ["mean_CN_Voronoi", "density", "vpa", "crys_sys"]
    # a subset of stored descriptors is taken from the stored columns, not recomputed
    subset, _ = attach_descriptors(hybrid, "vpa")
    assert subset.feature_names == ["vpa"]
    assert np.array_equal(subset.features[:, 0], hybrid.features[:, 2])
    values, names, positions, failures = descriptor_values(hybrid, "vpa,crys_sys")
    assert names == ["vpa", "crys_sys"] and not failures and len(positions) == 12
    assert set(values[:, 1]) == {1.0}  # all cubic
    plain, _ = select_features(hybrid, "none")
    assert plain.features is None and "descriptors" not in plain.metadata
    # the dataset file keeps features, names and the record
    assert hybrid.subset(np.arange(3)).metadata["descriptors"]["settings"] == DescriptorSettings().to_dict()


def test_own_features_travel_with_the_descriptors(tmp_path):
    data = generated_dataset(8)
    own = np.arange(8.0)[:, None] * 0.5
    with_own = attach_features(data, [str(i) for i in data.ids], ["pressure"], own)
    hybrid, _ = attach_descriptors(with_own, "vpa")
    assert hybrid.feature_names == ["vpa", "pressure"]
    assert np.array_equal(hybrid.features[:, 1], own[:, 0])
    with pytest.raises(DatasetError, match="no features for 1 structure"):
        attach_features(data, [str(i) for i in data.ids[1:]], ["pressure"], own[1:])
    path = hybrid.save(tmp_path / "hybrid.npz")
    loaded = type(hybrid).load(path)
    assert loaded.feature_names == hybrid.feature_names and loaded.metadata["descriptors"]["names"] == ["vpa"]


def test_model_inputs_compute_missing_descriptors():
    data, _ = attach_descriptors(generated_dataset(6), "vpa,crys_sys")
    record = data.metadata["descriptors"]
    crystals = list(data.crystals())
    computed, kept, failures = model_inputs(record, data.feature_names, crystals)
    assert kept == list(range(6)) and not failures
    assert np.array_equal(computed, data.features)
    # columns are taken by name from a table that holds them in another order
    shuffled = data.features[:, ::-1]
    taken, _, _ = model_inputs(record, data.feature_names, crystals, shuffled, data.feature_names[::-1])
    assert np.array_equal(taken, data.features)


def fit(data, output_dir, pooling="mean", epochs=2, seed=0, **train):
    config = {"epochs": epochs, "batch_size": 16, "seed": seed, "lr": 5e-3, **train}
    return Trainer(
        data,
        output_dir,
        model_config={**SMALL, "pooling": pooling},
        train_config=config,
        workers=1,
        progress=False,
    ).fit()


@pytest.mark.parametrize("pooling", ["mean", "sum", "site"])
def test_checkpoint_carries_descriptors_and_predictor_computes_them(tmp_path, pooling):
    data, _ = attach_descriptors(generated_dataset(24), NAMES)
    data = attach_features(data, [str(i) for i in data.ids], ["pressure"], np.linspace(0, 1, 24)[:, None])
    result = fit(data, tmp_path / "run", pooling)
    state = load_checkpoint(result.best_checkpoint)
    assert state["descriptors"]["names"] == ["mean_CN_Voronoi", "density", "vpa", "crys_sys"]
    assert state["feature_names"] == data.feature_names
    train = state["split"]["train"].numpy()
    mean = data.features[train].mean(axis=0)
    assert state["state_dict"]["head.extra_mean"].numpy() == pytest.approx(mean, rel=1e-6)
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    stored = predictor.predict(data)  # features stored in the dataset
    fresh = [crystal(str(c.id), c.lattice, c.frac_coords, c.numbers) for c in data.crystals()]
    computed = predictor.predict(fresh, features=data.features[:, -1:])  # only the user's own feature
    assert np.allclose(computed.values, stored.values, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pressure"):
        predictor.predict(fresh)


def test_classification_and_automatic_descriptors(tmp_path):
    data, _ = attach_descriptors(generated_dataset(24, target="system"), "vpa,mean_CN_Voronoi")
    result = fit(data, tmp_path / "run")
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    prediction = predictor.predict([fcc_primitive(sid="new-fcc")])  # no features given: computed
    assert prediction.values.shape == (1, 2) and prediction.values.sum() == pytest.approx(1.0)
    assert predictor.predict(data).values == pytest.approx(
        predictor.predict(list(data.crystals())).values, rel=1e-5, abs=1e-6
    )


def test_structure_without_a_descriptor_is_named(tmp_path):
    data, _ = attach_descriptors(generated_dataset(16), "packing_frac,vpa")
    result = fit(data, tmp_path / "run", epochs=1)
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    krypton = crystal("KrF-salt", 5.0 * np.eye(3), [[0, 0, 0], [0.5, 0.5, 0.5]], [36, 9])
    with pytest.raises(InvalidStructureError, match=r"KrF-salt.*packing_frac"):
        predictor.predict([fcc_primitive(sid="ok"), krypton])
    prediction = predictor.predict([fcc_primitive(sid="ok"), krypton], skip_invalid=True)
    assert prediction.ids == ["ok"] and prediction.skipped[0].id == "KrF-salt"


def test_hybrid_learns_what_the_graph_cannot_see(tmp_path):
    """fcc and ideal hcp of the same metal and neighbour distance have identical 12-neighbour graphs,
    so a plain CGCNN predicts the same value for both; with the descriptor natoms (1 vs 2 atoms in the
    primitive cell) the hybrid model separates them (target natoms x d)."""
    data = fcc_hcp_dataset(30)
    hybrid, _ = attach_descriptors(data, "natoms")
    split = {"train_ratio": 0.5, "val_ratio": 0.25, "test_ratio": 0.25}
    plain = Predictor.from_checkpoint(fit(data, tmp_path / "plain", epochs=3, **split).best_checkpoint)
    pairs = plain.predict(data).values.reshape(-1, 2)
    assert pairs[:, 0] == pytest.approx(pairs[:, 1], rel=1e-5)  # blind to the difference
    result = fit(hybrid, tmp_path / "hybrid", epochs=60, batch_size=4, **split)
    test = result.metrics["test"]
    # the plain model's best possible error is d/2 ~ 1.4 Å; the hybrid model learns the factor two
    assert test["mae"] < 0.35, test
    assert test["mae_over_mad"] < 0.25, test


def test_descriptors_of_a_dataset_are_those_of_its_crystals():
    data = generated_dataset(5)
    hybrid, _ = attach_descriptors(data, "all")
    table = compute_descriptors(list(data.crystals()), "all", workers=1)
    matrix, columns = table.columns()
    assert columns == hybrid.feature_names and np.array_equal(matrix, hybrid.features)
    assert torch.from_numpy(matrix).isfinite().all()


def test_descriptors_stored_with_other_settings_are_recomputed(tmp_path):
    data, _ = attach_descriptors(generated_dataset(16), "mean_CN_Voronoi,vpa")
    predictor = Predictor.from_checkpoint(fit(data, tmp_path / "run", epochs=1).best_checkpoint)
    # a coarse face tolerance drops the 6 second-shell faces of bcc: other coordination numbers
    stale, _ = attach_descriptors(
        generated_dataset(16), "mean_CN_Voronoi,vpa", DescriptorSettings(face_tol=0.5)
    )
    assert not np.array_equal(stale.features, data.features)
    assert predictor.predict(stale).values == pytest.approx(predictor.predict(data).values, rel=1e-6)
