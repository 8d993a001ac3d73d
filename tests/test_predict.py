"""Predictor without ids names structures by their own labels; the predictions CSV carries units."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.predict import Prediction, Predictor, read_predictions_csv
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    structures, energies = emt_alloys(12, seed=3)
    dataset, _ = CrystalDataset.from_structures(structures, energies, target_names=["e"], units=["eV/atom"])
    run = tmp_path_factory.mktemp("run")
    result = Trainer(
        dataset,
        run,
        model_config={"atom_fea_len": 8, "n_conv": 1},
        train_config={"epochs": 1},
        progress=False,
    ).fit()
    return Predictor.from_checkpoint(result.best_checkpoint)


def test_structures_without_ids_are_named_by_formula_file_stem_or_info(predictor, tmp_path):
    copper, nickel = bulk("Cu", cubic=True), bulk("Ni", cubic=True)
    named = bulk("Al", cubic=True)
    named.info["id"] = "my-aluminium"
    bulk("Ag", cubic=True).write(tmp_path / "silver.cif")
    prediction = predictor.predict([copper, nickel, named, tmp_path / "silver.cif", copper.copy()])
    # the two Cu4 cells share a formula: each gets its input position
    assert prediction.ids == ["Cu4#0", "Ni4", "my-aluminium", "silver", "Cu4#4"]
    assert predictor.predict([nickel], ids=["x"]).ids == ["x"]
    with pytest.raises(ValueError, match="2 structures but 1 ids"):
        predictor.predict([copper, nickel], ids=["x"])


def test_skipped_structures_keep_their_own_label(predictor):
    from ase import Atoms

    gas = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    prediction = predictor.predict([bulk("Cu", cubic=True), gas], skip_invalid=True)
    assert prediction.ids == ["Cu4"] and [s.id for s in prediction.skipped] == ["H2"]
    assert "pbc=[False, False, False]" in prediction.skipped[0].reason


def test_the_csv_names_each_column_unit_and_reads_back(predictor, tmp_path):
    prediction = predictor.predict([bulk("Cu", cubic=True), bulk("Ni", cubic=True)])
    path = tmp_path / "p.csv"
    prediction.write_csv(path, targets=np.array([[0.1], [0.2]]))
    lines = path.read_text().splitlines()
    assert lines[:2] == ["id,e_pred,e_true", "# units,eV/atom,eV/atom"]
    units, rows = read_predictions_csv(path)
    assert units == {"id": "", "e_pred": "eV/atom", "e_true": "eV/atom"}
    assert [r["id"] for r in rows] == ["Cu4", "Ni4"] and [r["e_true"] for r in rows] == [0.1, 0.2]
    assert [r["e_pred"] for r in rows] == pytest.approx(prediction.values[:, 0].tolist(), rel=1e-12)


def test_a_classification_csv_names_probabilities(tmp_path):
    prediction = Prediction(
        ids=["a"],
        values=np.array([[0.25, 0.75]]),
        target_names=["kind"],
        units=[""],
        task="classification",
        classes=["metal", "insulator"],
    )
    prediction.write_csv(tmp_path / "c.csv")
    units, rows = read_predictions_csv(tmp_path / "c.csv")
    assert units == {
        "id": "",
        "predicted": "class index",
        "p_metal": "probability",
        "p_insulator": "probability",
    }
    assert rows == [{"id": "a", "predicted": 1, "p_metal": 0.25, "p_insulator": 0.75}]


def test_a_csv_without_units_reads_with_empty_units(tmp_path):
    (tmp_path / "old.csv").write_text("id,e_pred\nx,1.5\n")
    assert read_predictions_csv(tmp_path / "old.csv") == (
        {"id": "", "e_pred": ""},
        [{"id": "x", "e_pred": 1.5}],
    )


@pytest.fixture(scope="module")
def feature_predictor(tmp_path_factory):
    """A model with two per-structure features of the user's own beside the graph."""
    structures, energies = emt_alloys(12, seed=5)
    dataset, _ = CrystalDataset.from_structures(structures, energies, target_names=["e"], units=["eV/atom"])
    dataset.features = np.random.default_rng(0).normal(size=(12, 2)) * [1.0, 5.0]
    dataset.feature_names = ["f0", "f1"]
    result = Trainer(
        dataset,
        tmp_path_factory.mktemp("features-run"),
        model_config={"atom_fea_len": 8, "n_conv": 1},
        train_config={"epochs": 2, "batch_size": 4, "lr": 0.02},
        workers=1,
        progress=False,
    ).fit()
    return Predictor.from_checkpoint(result.best_checkpoint), structures


def test_user_features_stay_aligned_when_invalid_structures_are_skipped(feature_predictor):
    """One structure invalid at the door (a molecule), one whose graph fails (an atom alone in a 20 Å
    cell): the features of the three kept structures must still be theirs."""
    from ase import Atoms

    predictor, structures = feature_predictor
    good = [structures[0], structures[1], structures[2]]
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    lonely = Atoms("Cu", cell=[20.0, 20.0, 20.0], pbc=True)
    features = np.array([[0.5, -4.0], [9.0, 9.0], [-1.0, 3.0], [-9.0, -9.0], [2.0, 0.0]])
    mixed = [good[0], molecule, good[1], lonely, good[2]]
    prediction = predictor.predict(mixed, ids=list("abcde"), features=features, skip_invalid=True)
    assert prediction.ids == ["a", "c", "e"]
    assert [s.id for s in prediction.skipped] == ["b", "d"]
    alone = predictor.predict(good, ids=["a", "c", "e"], features=features[[0, 2, 4]])
    np.testing.assert_allclose(prediction.values, alone.values, rtol=1e-12)
    # the features matter to this model: moved by one row, they give other values
    moved = predictor.predict(good, ids=["a", "c", "e"], features=features[[2, 4, 0]])
    assert np.abs(moved.values - alone.values).max() > 1e-4

    # a dataset carrying the features: the crystal whose graph fails goes with its row
    dataset, _ = CrystalDataset.from_structures(
        [good[0], lonely, good[1], good[2]], np.zeros(4), ids=["a", "d", "c", "e"]
    )
    dataset.features, dataset.feature_names = features[[0, 3, 2, 4]], ["f0", "f1"]
    from_dataset = predictor.predict(dataset, skip_invalid=True)
    assert from_dataset.ids == ["a", "c", "e"] and [s.id for s in from_dataset.skipped] == ["d"]
    np.testing.assert_allclose(from_dataset.values, alone.values, rtol=1e-12)


def test_graphs_built_in_chunks_give_the_values_features_and_skips_of_one_pass(
    feature_predictor, monkeypatch
):
    """Without a graph cache a prediction holds the graphs of ``GRAPH_CHUNK`` structures at a time:
    chunks of two build at most two graphs at once and give each structure its one-pass values,
    crystal vectors and own features, in order, the structure whose graph fails in a later chunk
    skipped under its own name."""
    from ase import Atoms

    import aiida_cgcnn.predict as predict_module

    predictor, structures = feature_predictor
    mixed = [*structures[:5], Atoms("Cu", cell=[20.0, 20.0, 20.0], pbc=True), *structures[5:8]]
    features = np.random.default_rng(1).normal(size=(len(mixed), 2)) * [1.0, 5.0]
    ids = [f"s{k}" for k in range(len(mixed))]
    whole = predictor.predict(mixed, ids=ids, features=features, skip_invalid=True, return_vectors=True)

    sizes = []
    build = predict_module.build_graph_store

    def counted(crystals, *args, **kwargs):
        sizes.append(len(crystals))
        return build(crystals, *args, **kwargs)

    monkeypatch.setattr(predict_module, "build_graph_store", counted)
    monkeypatch.setattr(predict_module, "GRAPH_CHUNK", 2)
    chunked = predictor.predict(mixed, ids=ids, features=features, skip_invalid=True, return_vectors=True)
    assert sizes == [2, 2, 2, 2, 1]
    assert chunked.ids == whole.ids == [i for i in ids if i != "s5"]
    assert [s.id for s in chunked.skipped] == [s.id for s in whole.skipped] == ["s5"]
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.crystal_vectors, whole.crystal_vectors, rtol=1e-5, atol=1e-6)
    # the features matter to this model: rows of the wrong structures would give other values
    kept = [mixed[k] for k in range(len(mixed)) if k != 5]
    shuffled = predictor.predict(kept, features=np.delete(features, 5, axis=0)[::-1])
    assert np.abs(shuffled.values - chunked.values).max() > 1e-4
