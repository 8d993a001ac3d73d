"""The line graph (ALIGNN) against a brute-force construction: same bond pairs, same angles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from aiida_cgcnn.graph.batch import GraphStore
from aiida_cgcnn.graph.crystal_graph import CrystalGraph, build_graph
from aiida_cgcnn.graph.line_graph import line_graph, line_graph_sizes
from tests.builders import (
    bcc_primitive,
    fcc_primitive,
    rocksalt_conventional,
    rocksalt_primitive,
    simple_cubic,
)

# small real structures of different shapes (JARVIS sample)
IDS = ["POSCAR-JVASP-1372.vasp", "POSCAR-JVASP-14014.vasp", "POSCAR-JVASP-64906.vasp"]


def brute_force(graph: CrystalGraph, backtracking: bool = True) -> dict[tuple[int, int], float]:
    """Every pair (a→b, b→c) by a double loop; cos of the angle a-b-c from the periodic images."""
    pairs = {}
    for first, second in itertools.product(range(graph.num_edges), repeat=2):
        if graph.dst[first] != graph.src[second]:
            continue
        # a bond and its own reverse: the same two atoms, opposite periodic images
        reverse = graph.src[first] == graph.dst[second] and np.array_equal(
            graph.images[first], -graph.images[second]
        )
        if reverse and not backtracking:
            continue
        to_a = graph.vectors[first].astype(np.float64)  # from b to a
        to_c = -graph.vectors[second].astype(np.float64)  # from b to c
        pairs[(first, second)] = float(to_a @ to_c / np.linalg.norm(to_a) / np.linalg.norm(to_c))
    return pairs


def as_dict(graph: CrystalGraph, backtracking: bool = True) -> dict[tuple[int, int], float]:
    lines = line_graph(
        torch.from_numpy(graph.src.astype(np.int64)),
        torch.from_numpy(graph.dst.astype(np.int64)),
        torch.from_numpy(graph.vectors),
        graph.num_atoms,
        backtracking,
    )
    result = dict(
        zip(zip(lines.src.tolist(), lines.dst.tolist(), strict=True), lines.cosines.tolist(), strict=True)
    )
    assert len(result) == lines.num_edges  # no pair twice
    return result


@pytest.fixture(scope="module")
def small_graphs(jarvis_dataset):
    index = {str(sid): k for k, sid in enumerate(jarvis_dataset.ids)}
    real = [jarvis_dataset.crystal(index[sid]) for sid in IDS]
    made = [fcc_primitive(), bcc_primitive(), rocksalt_primitive(), rocksalt_conventional()]
    return [build_graph(c) for c in made + real]


@pytest.mark.parametrize("backtracking", [True, False])
def test_same_pairs_and_angles_as_brute_force(small_graphs, backtracking):
    for graph in small_graphs:
        expected = brute_force(graph, backtracking)
        found = as_dict(graph, backtracking)
        assert set(found) == set(expected)
        keys = sorted(expected)
        np.testing.assert_allclose([found[k] for k in keys], [expected[k] for k in keys], atol=2e-6)


def test_fcc_counts_and_angles():
    # one atom, twelve nearest neighbours: 12 bonds, 12 x 12 pairs, 12 of them a bond and its reverse
    graph = build_graph(fcc_primitive())
    assert graph.num_edges == 12
    with_reverse, without = as_dict(graph, True), as_dict(graph, False)
    assert len(with_reverse) == 144 and len(without) == 132
    # angles between nearest-neighbour bonds of fcc: 60, 90, 120, 180 degrees (and 0 for the reverse)
    np.testing.assert_allclose(
        sorted(set(np.round(list(with_reverse.values()), 6))), [-1, -0.5, 0, 0.5, 1], atol=1e-6
    )
    assert all(abs(with_reverse[key] - 1) < 1e-6 for key in set(with_reverse) - set(without))
    assert min(without.values()) >= -1 and max(without.values()) < 1 - 1e-6


def test_other_images_of_the_same_atom_are_not_backtracking():
    # simple cubic, one atom: its 18 neighbours (6 at a, 12 tied at a√2) are all images of itself,
    # so every bond pair joins the atom to itself, yet only a bond and its exact reverse backtrack
    graph = build_graph(simple_cubic())
    assert graph.num_edges == 18 and set(graph.src) == {0}
    with_reverse, without = as_dict(graph, True), as_dict(graph, False)
    assert len(with_reverse) == 18 * 18 and len(without) == 18 * 18 - 18
    assert set(without) == set(brute_force(graph, False))
    assert all(cos < 1 - 1e-6 for cos in without.values())


def test_batch_line_graph_is_the_union_of_the_crystals(small_graphs):
    store = GraphStore.from_graphs(small_graphs)
    batch = store.batch(np.arange(len(store)))
    lines = line_graph(batch.src, batch.dst, batch.vectors, batch.numbers.shape[0])
    edge_offsets = np.concatenate([[0], np.cumsum([g.num_edges for g in small_graphs])])
    expected = {}
    for k, graph in enumerate(small_graphs):
        for (first, second), cos in as_dict(graph).items():
            expected[(first + edge_offsets[k], second + edge_offsets[k])] = cos
    found = dict(
        zip(zip(lines.src.tolist(), lines.dst.tolist(), strict=True), lines.cosines.tolist(), strict=True)
    )
    assert set(found) == set(expected)
    # the sizes, per crystal, without building anything
    sizes = line_graph_sizes(store.src, store.dst, store.edge_ptr, store.atom_ptr)
    np.testing.assert_array_equal(sizes, [len(as_dict(g)) for g in small_graphs])
    # grouped by the bond receiving the messages
    assert torch.all(lines.dst[1:] >= lines.dst[:-1])


def test_order_of_bonds_does_not_matter(small_graphs):
    graph = small_graphs[-1]
    rng = np.random.default_rng(0)
    order = rng.permutation(graph.num_edges)
    shuffled = CrystalGraph(
        graph.numbers,
        graph.src[order],
        graph.dst[order],
        graph.distances[order],
        graph.images[order],
        graph.vectors[order],
    )
    original = as_dict(graph)
    # shuffled bond k is original bond order[k]
    found = {(int(order[a]), int(order[b])): cos for (a, b), cos in as_dict(shuffled).items()}
    assert set(found) == set(original)
    assert all(abs(found[k] - original[k]) < 1e-6 for k in original)
