"""GraphStore and Batch (disjoint union), and the on-disk graph cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiida_cgcnn.graph.batch import GraphStore, build_graph_store, gather_ranges
from aiida_cgcnn.graph.crystal_graph import GraphSettings, build_graph
from tests.builders import (
    bcc_primitive,
    crystal,
    cscl,
    fcc_primitive,
    rocksalt_conventional,
    rocksalt_primitive,
)

STORE_ARRAYS = GraphStore._ARRAYS


def small_crystals():
    return [
        rocksalt_primitive(sid="NaCl"),
        bcc_primitive(sid="Fe"),
        rocksalt_conventional(sid="NaCl8"),
        cscl(sid="KCl"),
        fcc_primitive(sid="Cu"),
    ]


def assert_stores_equal(a: GraphStore, b: GraphStore):
    for name in STORE_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_gather_ranges():
    ptr = np.array([0, 2, 5, 5, 9])
    idx, counts = gather_ranges(ptr, np.array([3, 0, 2, 1]))
    assert idx.tolist() == [5, 6, 7, 8, 0, 1, 2, 3, 4]
    assert counts.tolist() == [4, 2, 0, 3]


def test_batch_is_the_disjoint_union_of_its_graphs():
    crystals = small_crystals()
    graphs = [build_graph(c) for c in crystals]
    store = GraphStore.from_graphs(graphs)
    assert len(store) == 5
    order = np.array([2, 0, 3])
    targets = np.arange(10, dtype=float).reshape(5, 2)
    batch = store.batch(order, targets=targets)
    chosen = [graphs[i] for i in order]
    assert batch.num_crystals == 3
    assert batch.num_atoms.tolist() == [g.num_atoms for g in chosen]
    assert batch.numbers.shape[0] == sum(g.num_atoms for g in chosen)
    assert batch.src.shape[0] == sum(g.num_edges for g in chosen)
    np.testing.assert_array_equal(batch.indices, order)
    np.testing.assert_array_equal(batch.targets.numpy(), targets[order].astype(np.float32))
    atom_offset = edge_offset = 0
    for k, g in enumerate(chosen):
        atoms = slice(atom_offset, atom_offset + g.num_atoms)
        edges = slice(edge_offset, edge_offset + g.num_edges)
        np.testing.assert_array_equal(batch.numbers[atoms].numpy(), g.numbers)
        np.testing.assert_array_equal(batch.crystal_index[atoms].numpy(), k)
        # edge indices are shifted by the atoms of the crystals before, and stay inside the crystal
        np.testing.assert_array_equal(batch.src[edges].numpy(), g.src + atom_offset)
        np.testing.assert_array_equal(batch.dst[edges].numpy(), g.dst + atom_offset)
        np.testing.assert_array_equal(batch.distances[edges].numpy(), g.distances)
        np.testing.assert_array_equal(batch.vectors[edges].numpy(), g.vectors)
        atom_offset += g.num_atoms
        edge_offset += g.num_edges
    # no edge crosses from one crystal to another
    ci = batch.crystal_index
    assert bool((ci[batch.src] == ci[batch.dst]).all())


def test_store_graph_and_select_round_trip():
    graphs = [build_graph(c) for c in small_crystals()]
    store = GraphStore.from_graphs(graphs)
    for k, g in enumerate(graphs):
        back = store.graph(k)
        for name in ("numbers", "src", "dst", "distances", "images", "vectors"):
            np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    sub = store.select([4, 1])
    assert len(sub) == 2
    assert_stores_equal(sub, GraphStore.from_graphs([graphs[4], graphs[1]]))


def test_iter_batches_covers_every_crystal_once():
    store = GraphStore.from_graphs([build_graph(c) for c in small_crystals()])
    indices = np.array([4, 3, 2, 1, 0])
    batches = list(store.iter_batches(indices, batch_size=2))
    assert [b.num_crystals for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), indices)
    assert sum(int(b.numbers.shape[0]) for b in batches) == int(store.num_atoms.sum())


def test_empty_store():
    store = GraphStore.from_graphs([])
    assert len(store) == 0
    assert store.vectors.shape == (0, 3)


# --- cache ------------------------------------------------------------------------------------


def cache_files(directory):
    return sorted(p.name for p in directory.glob("graphs-*.npz"))


def test_second_build_loads_from_cache(tmp_path):
    crystals = small_crystals()
    store, failures = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert failures == []
    [name] = cache_files(tmp_path)
    assert (tmp_path / name).with_suffix(".failures.json").is_file()
    again, _ = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert_stores_equal(store, again)
    assert again.key == store.key != ""
    assert_stores_equal(store, GraphStore.from_graphs([build_graph(c) for c in crystals]))

    # prove the second build read the file: a store written under the same key is what comes back
    path = tmp_path / name
    marked = GraphStore(**{k: getattr(store, k) for k in STORE_ARRAYS}, key=store.key)
    marked.distances = marked.distances + 100.0
    marked.save(path)
    loaded, _ = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    np.testing.assert_array_equal(loaded.distances, store.distances + 100.0)


@pytest.mark.parametrize(
    "settings",
    [
        GraphSettings(radius=6.0),
        GraphSettings(max_neighbors=8),
        GraphSettings(tie_tolerance=1e-3),
        GraphSettings(max_radius=20.0),
    ],
    ids=["radius", "max_neighbors", "tie_tolerance", "max_radius"],
)
def test_changed_setting_never_uses_a_stale_cache(tmp_path, settings):
    crystals = small_crystals()
    store, _ = build_graph_store(crystals, GraphSettings(), cache_dir=tmp_path, workers=1)
    [first] = cache_files(tmp_path)
    # poison the first cache file: any use of it for other settings would show
    poisoned = GraphStore(**{k: getattr(store, k) for k in STORE_ARRAYS}, key=store.key)
    poisoned.distances = poisoned.distances * 0 - 1
    poisoned.save(tmp_path / first)
    other, _ = build_graph_store(crystals, settings, cache_dir=tmp_path, workers=1)
    assert other.key != store.key
    assert len(cache_files(tmp_path)) == 2
    assert_stores_equal(other, GraphStore.from_graphs([build_graph(c, settings) for c in crystals]))


def test_changed_coordinate_never_uses_a_stale_cache(tmp_path):
    crystals = small_crystals()
    store, _ = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    moved = list(crystals)
    c = crystals[2]
    frac = c.frac_coords.copy()
    frac[0, 0] += 0.01
    moved[2] = crystal(c.id, c.lattice, frac, c.numbers)
    rebuilt, _ = build_graph_store(moved, cache_dir=tmp_path, workers=1)
    assert rebuilt.key != store.key
    assert len(cache_files(tmp_path)) == 2
    assert_stores_equal(rebuilt, GraphStore.from_graphs([build_graph(x) for x in moved]))
    assert not np.array_equal(rebuilt.distances, store.distances)
    # the cache is keyed by the structures: a change of element alone is a new key too
    swapped = list(crystals)
    swapped[0] = crystal(c.id, crystals[0].lattice, crystals[0].frac_coords, [19, 17])
    assert build_graph_store(swapped, cache_dir=tmp_path, workers=1)[0].key not in (store.key, rebuilt.key)


def test_corrupted_cache_file_is_rebuilt(tmp_path):
    crystals = small_crystals()
    store, _ = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    [name] = cache_files(tmp_path)
    path = tmp_path / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated (partially written) file
    rebuilt, _ = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert_stores_equal(rebuilt, store)
    assert GraphStore.load(path, store.key) is not None, "the rebuilt store is written back"
    path.write_bytes(b"not a numpy file at all")
    assert GraphStore.load(path, store.key) is None
    assert_stores_equal(build_graph_store(crystals, cache_dir=tmp_path, workers=1)[0], store)


def test_cache_file_with_another_key_is_not_trusted(tmp_path):
    store, _ = build_graph_store(small_crystals(), cache_dir=tmp_path, workers=1)
    [name] = cache_files(tmp_path)
    assert GraphStore.load(tmp_path / name, store.key) is not None
    assert GraphStore.load(tmp_path / name, "0" * 64) is None


def test_failures_are_reported_and_cached(tmp_path):
    crystals = small_crystals()
    crystals.insert(1, crystal("lonely", 20 * np.eye(3), [[0, 0, 0]], [29]))
    store, failures = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert len(store) == len(crystals) - 1
    assert [f[0] for f in failures] == [1]
    assert "lonely" in failures[0][1]
    [name] = cache_files(tmp_path)
    recorded = json.loads((tmp_path / name).with_suffix(".failures.json").read_text())
    assert [f[0] for f in recorded] == [1]
    again, failures_again = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert failures_again == failures
    assert_stores_equal(again, store)


def test_parallel_build_equals_serial(jarvis_dataset):
    crystals = list(jarvis_dataset.crystals()) * 2  # 98 crystals: enough for the process pool
    serial, _ = build_graph_store(crystals, workers=1)
    parallel, failures = build_graph_store(crystals, workers=2)
    assert failures == []
    assert_stores_equal(serial, parallel)


@pytest.mark.parametrize("content", ['[[0, "trunc', "not json", '{"a": 1}', "[[1, 2, 3]]", "[]"])
def test_corrupted_failure_list_is_rebuilt(tmp_path, content):
    crystals = small_crystals()
    crystals.insert(2, crystal("lonely", 20 * np.eye(3), [[0, 0, 0]], [29]))
    store, failures = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    [name] = cache_files(tmp_path)
    failure_file = (tmp_path / name).with_suffix(".failures.json")
    failure_file.write_text(content)  # e.g. a write cut short
    again, failures_again = build_graph_store(crystals, cache_dir=tmp_path, workers=1)
    assert failures_again == failures and [f[0] for f in failures] == [2]
    assert_stores_equal(again, store)
    assert json.loads(failure_file.read_text()) == [list(f) for f in failures]
