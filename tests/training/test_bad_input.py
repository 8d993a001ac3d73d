"""Bad input through the Python API: one clear error naming every bad structure, or with skip_invalid
the rest proceeds, the bad ones are reported, and nothing valid is lost."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiida_cgcnn.errors import DatasetError
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer
from tests.builders import SMALL_MODEL, crystal, cscl, rocksalt_primitive
from tests.datadirs import write_bad_directory, write_valid_directory

FAST = {"epochs": 1, "batch_size": 8}


def test_directory_with_every_kind_of_bad_input(tmp_path):
    data = write_bad_directory(tmp_path / "data")
    dataset_level = {k: v for k, v in data.bad.items() if k != "lonely"}
    with pytest.raises(DatasetError) as info:
        CrystalDataset.from_cgcnn_directory(data.path)
    message = str(info.value)
    for sid, reason in dataset_level.items():
        assert f"'{sid}'" in message, sid
        assert reason in message, reason
    assert "skip_invalid" in message
    dataset, skipped = CrystalDataset.from_cgcnn_directory(data.path, skip_invalid=True)
    assert sorted(s.id for s in skipped) == sorted(dataset_level)
    for s in skipped:
        assert dataset_level[s.id] in s.reason
    # every valid structure is kept, once, with its own target (not the duplicate row's 9.99)
    assert sorted(dataset.ids.tolist()) == sorted([*data.valid, "lonely"])
    row = dataset.ids.tolist().index(data.valid[3])
    assert dataset.targets[row, 0] != 9.99


def test_graph_failure_is_an_error_naming_the_structure(tmp_path):
    data = write_bad_directory(tmp_path / "data")
    dataset, skipped = CrystalDataset.from_cgcnn_directory(data.path, skip_invalid=True)
    with pytest.raises(DatasetError) as info:
        Trainer(dataset, tmp_path / "run", SMALL_MODEL, FAST, workers=1, skipped=skipped)
    assert "'lonely'" in str(info.value) and "max_radius" in str(info.value)


def test_skip_invalid_trains_on_all_valid_structures(tmp_path):
    data = write_bad_directory(tmp_path / "data")
    dataset, skipped = CrystalDataset.from_cgcnn_directory(data.path, skip_invalid=True)
    result = Trainer(
        dataset, tmp_path / "run", SMALL_MODEL, FAST, skip_invalid=True, workers=1, skipped=skipped
    ).fit()
    assert sorted(s.id for s in result.skipped) == sorted(data.bad_ids)
    m = result.metrics
    assert m["num_train"] + m["num_val"] + m["num_test"] == len(data.valid)
    assert m["num_skipped"] == len(data.bad_ids)
    recorded = json.loads((tmp_path / "run" / "skipped.json").read_text())
    assert sorted(r["id"] for r in recorded) == sorted(data.bad_ids)
    # the split indexes the valid structures only
    import torch

    split = torch.load(result.best_checkpoint, weights_only=True)["split"]
    together = np.concatenate([split[k].numpy() for k in ("train", "val", "test")])
    assert sorted(together.tolist()) == list(range(len(data.valid)))


def test_isolated_atom_rescued_by_max_radius(tmp_path):
    from aiida_cgcnn.graph.crystal_graph import GraphSettings

    good = [rocksalt_primitive(sid=f"r{k}", a=5.0 + 0.1 * k) for k in range(5)]
    lonely = crystal("lonely", 20 * np.eye(3), [[0, 0, 0]], [29])
    dataset, _ = CrystalDataset.from_structures(
        [*good, lonely], np.arange(6.0), ids=[c.id for c in [*good, lonely]]
    )
    result = Trainer(
        dataset, tmp_path / "run", SMALL_MODEL, FAST, graph_settings=GraphSettings(max_radius=30), workers=1
    ).fit()
    assert result.skipped == []
    assert result.metrics["num_train"] + result.metrics["num_val"] + result.metrics["num_test"] == 6


@pytest.mark.parametrize("kind", ["nan", "inf", "missing"])
def test_bad_targets_from_python(kind):
    crystals = [rocksalt_primitive(sid="a"), cscl(sid="b"), rocksalt_primitive(sid="c", a=5.0)]
    value = {"nan": np.nan, "inf": np.inf, "missing": None}[kind]
    targets = np.array([1.0, value, 2.0], dtype=float)
    with pytest.raises(DatasetError, match="'b': has a missing or NaN target"):
        CrystalDataset.from_structures(crystals, targets, ids=["a", "b", "c"])
    dataset, skipped = CrystalDataset.from_structures(
        crystals, targets, ids=["a", "b", "c"], skip_invalid=True
    )
    assert dataset.ids.tolist() == ["a", "c"] and [s.id for s in skipped] == ["b"]
    np.testing.assert_array_equal(dataset.targets[:, 0], [1.0, 2.0])


def test_duplicate_ids_from_python():
    crystals = [rocksalt_primitive(sid="x"), cscl(sid="y"), rocksalt_primitive(sid="z", a=5.0)]
    with pytest.raises(DatasetError, match="'x': duplicate id"):
        CrystalDataset.from_structures(crystals, [1.0, 2.0, 3.0], ids=["x", "y", "x"])
    dataset, skipped = CrystalDataset.from_structures(
        crystals, [1.0, 2.0, 3.0], ids=["x", "y", "x"], skip_invalid=True
    )
    assert dataset.ids.tolist() == ["x", "y"] and dataset.targets[:, 0].tolist() == [1.0, 2.0]
    assert [s.id for s in skipped] == ["x"]


def test_pymatgen_and_ase_bad_structures_from_python():
    from ase.build import bulk
    from pymatgen.core import DummySpecies, Lattice, Structure

    items = {
        "ok": rocksalt_primitive(),
        "partial": Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]),
        "dummy": Structure(Lattice.cubic(3.0), [DummySpecies("X"), "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "argon": bulk("Ar", "fcc", a=5.26),
        "also-ok": bulk("Cu", "fcc", a=3.61),
    }
    with pytest.raises(DatasetError) as info:
        CrystalDataset.from_structures(list(items.values()), np.ones(5), ids=list(items))
    for sid in ("partial", "dummy", "argon"):
        assert f"'{sid}'" in str(info.value)
    assert "'ok'" not in str(info.value)
    dataset, skipped = CrystalDataset.from_structures(
        list(items.values()), np.ones(5), ids=list(items), skip_invalid=True
    )
    assert dataset.ids.tolist() == ["ok", "also-ok"]
    assert [s.id for s in skipped] == ["partial", "dummy", "argon"]


def test_empty_datasets(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "id_prop.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        CrystalDataset.from_cgcnn_directory(tmp_path / "empty")
    with pytest.raises(DatasetError, match="empty"):
        CrystalDataset.from_structures([], [])
    from ase.build import bulk

    with pytest.raises(DatasetError, match="all 2 structures are invalid"):
        CrystalDataset.from_structures(
            [bulk("Ar", "fcc", a=5.26), bulk("Ne", "fcc", a=4.4)], [1.0, 2.0], skip_invalid=True
        )
    with pytest.raises(DatasetError, match=r"no id_prop\.csv"):
        CrystalDataset.from_cgcnn_directory(tmp_path)


def test_all_graphs_failing_is_an_empty_dataset(tmp_path):
    lonely = [crystal(f"lonely-{k}", (20 + k) * np.eye(3), [[0, 0, 0]], [29]) for k in range(2)]
    dataset, _ = CrystalDataset.from_structures(lonely, [1.0, 2.0], ids=[c.id for c in lonely])
    with pytest.raises(DatasetError, match="empty"):
        Trainer(dataset, tmp_path / "run", SMALL_MODEL, FAST, skip_invalid=True, workers=1)


def test_valid_directory_has_no_skipped(tmp_path):
    data = write_valid_directory(tmp_path / "data", n=6)
    dataset, skipped = CrystalDataset.from_cgcnn_directory(data.path)
    assert skipped == [] and dataset.ids.tolist() == data.valid
