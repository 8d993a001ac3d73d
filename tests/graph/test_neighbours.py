"""Periodic neighbour search, k nearest with ties kept, variable degree, isolated atoms."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_cgcnn.errors import InvalidStructureError
from aiida_cgcnn.graph.crystal_graph import CrystalGraph, GraphSettings, build_graph
from aiida_cgcnn.graph.neighbours import k_nearest_with_ties, periodic_neighbours
from aiida_cgcnn.structures import to_crystal
from tests.builders import (
    bcc_primitive,
    crystal,
    cscl,
    fcc_primitive,
    rocksalt_conventional,
    rocksalt_primitive,
)


def brute_force_pairs(lattice: np.ndarray, frac: np.ndarray, radius: float):
    """Every (centre, neighbour, image, distance) within ``radius`` by looping over enough periodic images."""
    cart = frac @ lattice
    # spacing of the lattice planes (1/|b_k|) tells how many images a sphere of ``radius`` spans
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lattice).T, axis=1)
    reach = np.ceil(radius / spacing).astype(int) + 1 + int(np.ceil(np.abs(frac).max()))
    images = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    shifts = images @ lattice
    out = []
    for i in range(len(frac)):
        for j in range(len(frac)):
            d = np.linalg.norm(cart[j] + shifts - cart[i], axis=1)
            for k in np.flatnonzero((d <= radius) & (d > 1e-8)):
                out.append((i, j, tuple(int(x) for x in images[k]), float(d[k])))
    return out


def brute_force_graph(lattice, frac, radius=8.0, k=12, tol=1e-5) -> dict[tuple, float]:
    """{(centre, neighbour, image): distance} of each centre's k nearest, ties with the k-th kept."""
    pairs = brute_force_pairs(lattice, frac, radius)
    kept = {}
    for i in range(len(frac)):
        mine = sorted((p for p in pairs if p[0] == i), key=lambda p: p[3])
        kth = mine[k - 1][3] if len(mine) >= k else np.inf
        kept.update({(c, n, im): d for c, n, im, d in mine if d <= kth + tol})
    return kept


def edge_dict(graph: CrystalGraph) -> dict[tuple, float]:
    return {
        (int(c), int(n), tuple(int(x) for x in im)): float(d)
        for c, n, im, d in zip(graph.dst, graph.src, graph.images, graph.distances, strict=True)
    }


def shells(graph: CrystalGraph, centre: int = 0, decimals: int = 4) -> dict[float, int]:
    d = np.round(graph.distances[graph.dst == centre].astype(np.float64), decimals)
    values, counts = np.unique(d, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_fcc_first_shell_is_twelve_at_a_over_sqrt2():
    a = 3.61
    graph = build_graph(fcc_primitive(29, a))
    assert graph.num_edges == 12
    np.testing.assert_allclose(graph.distances, a / np.sqrt(2), rtol=1e-6)
    # the 12 edges go to 12 distinct periodic images of the single atom
    assert len({tuple(im) for im in graph.images}) == 12


def test_bcc_tied_second_shell_is_kept_whole():
    a = 2.87
    graph = build_graph(bcc_primitive(26, a), GraphSettings(max_neighbors=12))
    # 8 at a*sqrt(3)/2, then 6 at a: the 12th neighbour is in the second shell, so all 6 are kept
    assert shells(graph) == {round(a * np.sqrt(3) / 2, 4): 8, round(a, 4): 6}
    assert graph.num_edges == 14


def test_bcc_with_exact_shell_counts():
    graph = build_graph(bcc_primitive(26, 2.87), GraphSettings(max_neighbors=8))
    assert graph.num_edges == 8  # the first shell exactly: no tie with the next shell
    graph = build_graph(bcc_primitive(26, 2.87), GraphSettings(max_neighbors=9))
    assert graph.num_edges == 14  # the 9th is in the second shell: the whole second shell comes along


def test_ties_are_kept_for_slightly_perturbed_shells_within_tolerance():
    c = bcc_primitive(26, 2.87)
    # stretch x by 1e-7: the second shell splits into 4 neighbours at a and 2 at a(1 + 1e-7)
    strained = crystal("bcc-strained", c.lattice @ np.diag([1 + 1e-7, 1, 1]), c.frac_coords, c.numbers)
    assert build_graph(strained).num_edges == 14  # within the 1e-5 A tie tolerance: one shell
    # with no tolerance the two stretched neighbours are no longer ties of the 12th
    split = build_graph(strained, GraphSettings(tie_tolerance=0.0))
    assert split.num_edges == 12


def test_rocksalt_first_shell_only():
    a = 5.64
    graph = build_graph(rocksalt_conventional(a=a), GraphSettings(max_neighbors=6))
    assert graph.num_edges == 8 * 6
    np.testing.assert_allclose(graph.distances, a / 2, rtol=1e-6)
    numbers = graph.numbers.astype(int)
    # every edge joins a cation and an anion
    assert np.all(numbers[graph.src] != numbers[graph.dst])
    assert np.all(np.bincount(graph.dst) == 6)


def test_rocksalt_default_twelve_gives_two_shells():
    graph = build_graph(rocksalt_primitive(a=5.64))
    # 6 unlike neighbours at a/2, then 12 like neighbours at a/sqrt(2): 12 reached inside the second shell
    assert shells(graph) == {2.82: 6, round(5.64 / np.sqrt(2), 4): 12}


def test_edges_sorted_by_centre_then_distance_and_vectors_consistent():
    c = rocksalt_primitive(a=5.64)
    graph = build_graph(c)
    assert np.all(np.diff(graph.dst) >= 0)
    for centre in range(c.num_atoms):
        d = graph.distances[graph.dst == centre]
        assert np.all(np.diff(d) >= 0)
    np.testing.assert_allclose(np.linalg.norm(graph.vectors, axis=1), graph.distances, rtol=1e-5)
    # vector = neighbour image - centre, from the images and the lattice
    cart = c.cart_coords
    expected = cart[graph.src] + graph.images @ c.lattice - cart[graph.dst]
    np.testing.assert_allclose(graph.vectors, expected, atol=1e-5)


JARVIS_IDS = [
    "POSCAR-JVASP-64906.vasp",  # oblique cell (73/130/130 degrees)
    "POSCAR-JVASP-10.vasp",  # hexagonal
    "POSCAR-JVASP-107772.vasp",  # very acute rhombohedral cell (31 degrees)
    "POSCAR-JVASP-50332.vasp",  # 58/149/133 degrees
    "POSCAR-JVASP-97570.vasp",  # triclinic, slightly negative fractional coordinates
    "POSCAR-JVASP-28634.vasp",  # a 34 A long cell
]


@pytest.mark.parametrize("sid", JARVIS_IDS)
def test_graph_matches_brute_force_on_real_structures(jarvis_dir, sid):
    c = to_crystal(jarvis_dir / sid)
    graph = build_graph(c)
    expected = brute_force_graph(c.lattice, c.frac_coords)
    got = edge_dict(graph)
    assert set(got) == set(expected)
    for key, distance in expected.items():
        assert got[key] == pytest.approx(distance, abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(graph.vectors, axis=1), graph.distances, rtol=1e-5)


def test_periodic_neighbours_matches_brute_force_within_radius(jarvis_dir):
    c = to_crystal(jarvis_dir / "POSCAR-JVASP-64906.vasp")
    centres, neighbours, images, distances = periodic_neighbours(c.lattice, c.frac_coords, 5.0)
    got = {
        (int(a), int(b), tuple(int(x) for x in im))
        for a, b, im in zip(centres, neighbours, images, strict=True)
    }
    expected = {(i, j, im) for i, j, im, _ in brute_force_pairs(c.lattice, c.frac_coords, 5.0)}
    assert got == expected
    assert np.all(distances > 0)


def test_variable_degree_no_padding():
    # with a 3.0 A radius, rock-salt atoms have exactly 6 neighbours: fewer than 12, all kept, none padded
    c = rocksalt_primitive(a=5.64)
    graph = build_graph(c, GraphSettings(radius=3.0, max_neighbors=12))
    np.testing.assert_array_equal(np.bincount(graph.dst, minlength=2), [6, 6])
    # a structure whose atoms have different numbers of neighbours within the radius
    lattice = np.diag([3.0, 3.0, 9.0])
    c2 = crystal("layered", lattice, [[0, 0, 0], [0, 0, 0.3], [0.5, 0.5, 0.65]], [6, 8, 29])
    graph2 = build_graph(c2, GraphSettings(radius=3.5, max_neighbors=12))
    degree = np.bincount(graph2.dst, minlength=3)
    pairs = brute_force_pairs(lattice, c2.frac_coords, 3.5)
    expected_degree = np.bincount([p[0] for p in pairs], minlength=3)
    np.testing.assert_array_equal(degree, expected_degree)
    assert len(set(degree.tolist())) > 1, "the test structure should have atoms of different degree"
    assert np.all(degree < 12)
    assert np.all(graph2.distances <= 3.5)


def test_k_nearest_with_ties_directly():
    centres = np.array([0, 0, 0, 0, 1, 1])
    distances = np.array([3.0, 1.0, 2.0, 2.0 + 1e-7, 5.0, 4.0])
    keep = k_nearest_with_ties(centres, distances, 2, k=2, tie_tolerance=1e-5)
    # centre 0: 1.0, then the tie at 2.0 / 2.0+1e-7 -> 3 kept; centre 1 has only 2 -> both kept
    assert sorted(keep.tolist()) == [1, 2, 3, 4, 5]
    assert keep.tolist()[:3] == [1, 2, 3]  # sorted by centre, then distance


def test_isolated_atom_is_rejected_naming_the_structure():
    lonely = crystal("lonely-Cu", 20.0 * np.eye(3), [[0, 0, 0]], [29])
    with pytest.raises(InvalidStructureError) as info:
        build_graph(lonely)
    assert info.value.structure_id == "lonely-Cu"
    message = str(info.value)
    assert "lonely-Cu" in message and "max_radius" in message and "8 Å" in message


def test_isolated_atom_builds_with_a_wider_max_radius():
    lonely = crystal("lonely-Cu", 20.0 * np.eye(3), [[0, 0, 0]], [29])
    graph = build_graph(lonely, GraphSettings(max_radius=30))
    # the search widens until it finds the 6 images at 20 A (the 12 at 28.3 A are beyond 8*1.5^3 = 27 A)
    assert graph.num_edges == 6
    np.testing.assert_allclose(graph.distances, 20.0, rtol=1e-6)
    with pytest.raises(InvalidStructureError, match="no neighbour within 18"):
        build_graph(lonely, GraphSettings(max_radius=18))


def test_overlapping_atoms_are_rejected():
    c = crystal("overlap", 4.0 * np.eye(3), [[0, 0, 0], [0.01, 0, 0]], [29, 29])
    with pytest.raises(InvalidStructureError, match="overlapping"):
        build_graph(c)


def test_cscl_has_eight_nearest():
    a = 3.78
    graph = build_graph(cscl(a=a), GraphSettings(radius=3.5))
    np.testing.assert_array_equal(np.bincount(graph.dst), [8, 8])
    np.testing.assert_allclose(graph.distances, a * np.sqrt(3) / 2, rtol=1e-6)


def test_graph_settings_key_tracks_every_setting():
    base = GraphSettings()
    keys = {
        base.key(),
        GraphSettings(radius=6.0).key(),
        GraphSettings(max_neighbors=8).key(),
        GraphSettings(tie_tolerance=1e-3).key(),
        GraphSettings(max_radius=12.0).key(),
    }
    assert len(keys) == 5
    assert GraphSettings.from_dict(base.to_dict()) == base
    assert GraphSettings.from_dict({**base.to_dict(), "unknown": 1}) == base


@pytest.mark.parametrize("shift", [(0.7, -0.35, 0.1), (3.2, -1.6, 0.1), (-5.6, 2.8, 0.1)])
def test_unwrapped_coordinates_give_the_same_graph(shift):
    # ASE's unwrapped positions (e.g. from MD) may lie outside the cell: same neighbours, and image
    # offsets that are consistent with the unwrapped coordinates
    c = rocksalt_primitive(a=5.64)
    moved = crystal("moved", c.lattice, c.frac_coords + np.array(shift), c.numbers)
    reference, graph = build_graph(c), build_graph(moved)
    np.testing.assert_array_equal(graph.dst, reference.dst)
    np.testing.assert_allclose(np.sort(graph.distances), np.sort(reference.distances), rtol=1e-6)
    cart = moved.cart_coords
    expected = cart[graph.src] + graph.images @ moved.lattice - cart[graph.dst]
    np.testing.assert_allclose(graph.vectors, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(graph.vectors, axis=1), graph.distances, rtol=1e-5)
