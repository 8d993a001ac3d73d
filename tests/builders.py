"""Small structures built from textbook lattices, their symmetry images, and the small model every test
trains or builds, for tests that need no data files."""

from __future__ import annotations

import numpy as np

from aiida_cgcnn.structures import Crystal

#: The small CGCNN of the tests, wherever the model's size is not the point (trains in seconds).
SMALL_MODEL = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 32}


def crystal(sid, lattice, frac_coords, numbers) -> Crystal:
    return Crystal(
        sid,
        np.asarray(lattice, dtype=np.float64),
        np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3),
        np.asarray(numbers, dtype=np.int64),
    )


def fcc_primitive(z: int = 29, a: float = 3.61, sid: str = "fcc") -> Crystal:
    lattice = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return crystal(sid, lattice, [[0, 0, 0]], [z])


def bcc_primitive(z: int = 26, a: float = 2.87, sid: str = "bcc") -> Crystal:
    lattice = 0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=float)
    return crystal(sid, lattice, [[0, 0, 0]], [z])


def simple_cubic(z: int = 84, a: float = 3.35, sid: str = "sc") -> Crystal:
    return crystal(sid, a * np.eye(3), [[0, 0, 0]], [z])


def rocksalt_primitive(
    z_cation: int = 11, z_anion: int = 17, a: float = 5.64, sid: str = "rocksalt"
) -> Crystal:
    lattice = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return crystal(sid, lattice, [[0, 0, 0], [0.5, 0.5, 0.5]], [z_cation, z_anion])


def rocksalt_conventional(
    z_cation: int = 11, z_anion: int = 17, a: float = 5.64, sid: str = "NaCl"
) -> Crystal:
    """The 8-atom cubic cell of rock salt (4 cations, 4 anions)."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    frac = np.concatenate([fcc, fcc + np.array([0.5, 0, 0])]) % 1.0
    return crystal(sid, a * np.eye(3), frac, [z_cation] * 4 + [z_anion] * 4)


def cscl(z_a: int = 19, z_b: int = 17, a: float = 3.78, sid: str = "KCl") -> Crystal:
    """The CsCl structure: 2 atoms, each with 8 nearest neighbours at a*sqrt(3)/2."""
    return crystal(sid, a * np.eye(3), [[0, 0, 0], [0.5, 0.5, 0.5]], [z_a, z_b])


def supercell(c: Crystal, reps: tuple[int, int, int], sid: str | None = None) -> Crystal:
    """A diagonal supercell of ``c``, built with NumPy only."""
    reps = tuple(int(r) for r in reps)
    shifts = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 3)
    frac = (c.frac_coords[None, :, :] + shifts[:, None, :]).reshape(-1, 3) / np.array(reps)
    numbers = np.tile(c.numbers, len(shifts))
    lattice = c.lattice * np.array(reps)[:, None]
    return crystal(sid or f"{c.id}-{'x'.join(map(str, reps))}", lattice, frac, numbers)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal 3x3 matrix (a proper or improper rotation)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def permuted(c: Crystal, rng: np.random.Generator) -> Crystal:
    """``c`` with its atoms in a random order."""
    order = rng.permutation(c.num_atoms)
    return crystal(c.id, c.lattice, c.frac_coords[order], c.numbers[order])


def moved(c: Crystal, rng: np.random.Generator) -> Crystal:
    """``c`` rotated (a random proper or improper rotation) and translated: the Cartesian frame (lattice
    rows) turns and every atom shifts by the same random fractional vector."""
    rotation = random_rotation(rng)
    shift = rng.uniform(-1, 1, size=3)
    return crystal(c.id, c.lattice @ rotation.T, c.frac_coords + shift, c.numbers)


def perovskite(a: str = "Sr", b: str = "Ti", x: str = "O", lattice: float = 3.9):
    """A cubic ABX3 perovskite of 5 atoms (pymatgen ``Structure``), as the perovskite data has them."""
    from pymatgen.core import Lattice, Structure

    sites = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(lattice), [a, b, x, x, x], sites)
