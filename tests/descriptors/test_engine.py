"""The descriptor engine on textbook crystals: exact values, Voronoi geometry, invariances, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiida_cgcnn.descriptors import (
    ALL_DESCRIPTORS,
    DEFAULT_DESCRIPTORS,
    LOCAL_DESCRIPTORS,
    compute_descriptors,
    crystal_descriptors,
    descriptor_columns,
    resolve_names,
    to_columns,
)
from aiida_cgcnn.descriptors.voronoi import voronoi_faces
from aiida_cgcnn.errors import InvalidStructureError
from aiida_cgcnn.structures import Crystal
from tests.builders import (
    bcc_primitive,
    crystal,
    cscl,
    fcc_primitive,
    random_rotation,
    rocksalt_conventional,
    rocksalt_primitive,
    simple_cubic,
    supercell,
)

#: Descriptors that a supercell of the same crystal leaves unchanged (matminer's struct_comp_cell
#: is computed for the cell as given, so it scales with the supercell size).
SUPERCELL_INVARIANT = [n for n in ALL_DESCRIPTORS if n != "struct_comp_cell"]


def test_names_are_the_papers():
    assert len(DEFAULT_DESCRIPTORS) == 28 and "space_group_num" not in DEFAULT_DESCRIPTORS
    assert len(LOCAL_DESCRIPTORS) == 15
    assert resolve_names("density, a ,vpa") == ["density", "vpa", "a"]  # canonical order
    assert descriptor_columns(["vpa", "crys_sys"])[1:] == [
        "crys_sys=cubic",
        "crys_sys=hexagonal",
        "crys_sys=trigonal",
        "crys_sys=tetragonal",
        "crys_sys=orthorhombic",
        "crys_sys=monoclinic",
        "crys_sys=triclinic",
    ]
    with pytest.raises(ValueError, match="unknown descriptors \\['densty'\\]"):
        resolve_names("densty,vpa")


def test_fcc_exact_values():
    a = 3.61
    values = crystal_descriptors(fcc_primitive(29, a), list(ALL_DESCRIPTORS))
    assert values["mean_CN_Voronoi"] == 12 and values["std_CN_Voronoi"] == 0
    assert values["mean_avg_bond_len"] == pytest.approx(a / math.sqrt(2), rel=1e-12)
    assert values["mean_avg_bond_ang"] == pytest.approx(math.pi / 3, rel=1e-12)  # nearest neighbours at 60°
    assert values["max_rela_bond_len"] == pytest.approx(1.0) and values["MAD_in_rela_atom_vol"] == 0
    assert values["vpa"] == pytest.approx(a**3 / 4, rel=1e-12)
    assert values["density"] == pytest.approx(63.546 * 1.66053906660e-24 / (a**3 / 4 * 1e-24), rel=1e-4)
    assert values["natoms"] == 1 and values["struct_comp_atom"] == 0
    assert [values[k] for k in ("a", "b", "c")] == pytest.approx([a / math.sqrt(2)] * 3, rel=1e-12)
    assert [values[k] for k in ("alpha", "beta", "gamma")] == pytest.approx([60.0] * 3, rel=1e-12)
    assert values["crys_sys"] == 1 and values["space_group_num"] == 225


def test_bcc_and_cscl_have_fourteen_faces():
    a = 2.87
    faces = voronoi_faces(bcc_primitive(26, a))
    assert len(faces.site) == 14
    first = np.isclose(faces.distance, a * math.sqrt(3) / 2)
    assert first.sum() == 8 and np.isclose(faces.distance[~first], a).all()
    # truncated octahedron: 8 regular hexagons with edge a/(2√2), 6 squares with the same edge
    edge = a / (2 * math.sqrt(2))
    assert faces.area[first] == pytest.approx(np.full(8, 3 * math.sqrt(3) / 2 * edge**2), rel=1e-10)
    assert faces.area[~first] == pytest.approx(np.full(6, edge**2), rel=1e-10)
    assert faces.solid_angle.sum() == pytest.approx(4 * math.pi, rel=1e-12)
    values = crystal_descriptors(cscl(), ["mean_CN_Voronoi", "crys_sys", "natoms"])
    assert values == {"mean_CN_Voronoi": 14.0, "crys_sys": 1.0, "natoms": 2.0}


@pytest.mark.parametrize("build", [fcc_primitive, bcc_primitive, simple_cubic, rocksalt_conventional, cscl])
def test_voronoi_cells_tile_the_crystal(build):
    """The cells fill the unit cell exactly, each closes (solid angles sum to 4π), faces come in pairs."""
    c = build()
    faces = voronoi_faces(c)
    volume = abs(np.linalg.det(c.lattice))
    assert faces.volume.sum() == pytest.approx(volume, rel=1e-10)
    totals = np.bincount(faces.site, faces.solid_angle)
    assert totals == pytest.approx(np.full(c.num_atoms, 4 * math.pi), rel=1e-10)
    # the face between i and j (an image of j) has the same area seen from j
    for i, j, area in zip(faces.site, faces.neighbour, faces.area, strict=True):
        assert np.isclose(faces.area[(faces.site == j) & (faces.neighbour == i)], area).any()


def test_rocksalt_primitive_and_conventional_agree():
    primitive = crystal_descriptors(rocksalt_primitive(), list(ALL_DESCRIPTORS))
    conventional = crystal_descriptors(rocksalt_conventional(), list(ALL_DESCRIPTORS))
    for name in SUPERCELL_INVARIANT:
        assert conventional[name] == pytest.approx(primitive[name], rel=1e-9, abs=1e-12), name
    assert primitive["mean_CN_Voronoi"] == 6 and primitive["natoms"] == 2
    assert primitive["mean_avg_bond_ang"] == pytest.approx(math.pi / 2)


def _distorted(seed: int = 3) -> Crystal:
    """A low-symmetry crystal: rock salt with every atom displaced and the cell sheared."""
    rng = np.random.default_rng(seed)
    base = rocksalt_conventional()
    lattice = base.lattice @ (np.eye(3) + 0.04 * rng.normal(size=(3, 3)))
    frac = base.frac_coords + 0.03 * rng.normal(size=base.frac_coords.shape)
    return crystal("distorted", lattice, frac, base.numbers)


def test_invariances(rng):
    """Rotation, translation, wrapping, site order and supercells do not change the descriptors."""
    base = _distorted()
    reference = crystal_descriptors(base, list(ALL_DESCRIPTORS))
    rotation = random_rotation(rng)
    order = rng.permutation(base.num_atoms)
    variants = {
        "rotated": crystal("r", base.lattice @ rotation.T, base.frac_coords, base.numbers),
        "translated": crystal("t", base.lattice, base.frac_coords + rng.random(3), base.numbers),
        "permuted": crystal("p", base.lattice, base.frac_coords[order], base.numbers[order]),
        "supercell": supercell(base, (2, 1, 2)),
    }
    for label, variant in variants.items():
        values = crystal_descriptors(variant, list(ALL_DESCRIPTORS))
        for name in SUPERCELL_INVARIANT:
            assert values[name] == pytest.approx(reference[name], rel=1e-8, abs=1e-10), (label, name)
    big = crystal_descriptors(variants["supercell"], ["struct_comp_cell"])["struct_comp_cell"]
    assert big == pytest.approx(4 * reference["struct_comp_cell"], rel=1e-10)


def test_large_void_grows_the_image_cloud():
    """A site with a far-reaching cell (a sparse, elongated crystal) still gets its exact cell."""
    c = crystal("sparse", np.diag([3.0, 3.0, 14.0]), [[0, 0, 0], [0.5, 0.5, 0.1]], [6, 8])
    faces = voronoi_faces(c, cutoff=4.0)
    assert faces.cutoff > 4.0
    assert faces.volume.sum() == pytest.approx(3 * 3 * 14, rel=1e-10)


def test_parallel_equals_serial_and_failures_are_named():
    crystals = [fcc_primitive(sid=f"fcc-{k}", a=3.5 + 0.01 * k) for k in range(20)]
    crystals.insert(7, crystal("krypton-salt", 5.6 * np.eye(3), [[0, 0, 0], [0.5, 0.5, 0.5]], [36, 9]))
    serial = compute_descriptors(crystals, "all", workers=1)
    parallel = compute_descriptors(crystals, "all", workers=2)
    assert np.array_equal(serial.values, parallel.values)
    assert serial.positions.tolist() == [k for k in range(21) if k != 7]
    ((position, message),) = serial.failures
    assert position == 7 and "krypton-salt" in message and "packing_frac" in message
    # without packing_frac the same structure is fine
    assert not compute_descriptors(crystals[7:8], "density,vpa", workers=1).failures


def test_columns_one_hot_crystal_system():
    values = np.array([[1.5, 1.0], [2.5, 7.0]])
    matrix, columns = to_columns(values, ["vpa", "crys_sys"])
    assert columns[0] == "vpa" and len(columns) == 8
    assert matrix.tolist() == [[1.5, 1, 0, 0, 0, 0, 0, 0], [2.5, 0, 0, 0, 0, 0, 0, 1]]


def test_overlapping_atoms_are_reported():
    c = crystal("twins", 4.0 * np.eye(3), [[0, 0, 0], [0, 0, 0]], [11, 17])
    with pytest.raises(InvalidStructureError, match="twins"):
        crystal_descriptors(c, "local")
