"""Small datasets for the descriptor tests: generated crystals, and slices of the real data."""

from __future__ import annotations

import numpy as np

from aiida_cgcnn.structures import Crystal
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.builders import bcc_primitive, crystal, cscl, fcc_primitive, rocksalt_primitive


def generated_dataset(n: int = 60, seed: int = 0, target: str = "vpa") -> CrystalDataset:
    """n cubic crystals (fcc, bcc, rock salt, CsCl) of random chemistry and size.

    ``target`` ``"vpa"``: the volume per atom (Å³), which the descriptor ``vpa`` gives exactly;
    ``"system"``: a class, 0 for one-atom cells and 1 for two-atom cells.
    """
    rng = np.random.default_rng(seed)
    metals, cations, anions = [13, 29, 26, 28, 47], [3, 11, 19, 12], [9, 17, 35, 8]
    crystals, values = [], []
    for k in range(n):
        kind = k % 4
        scale = float(rng.uniform(0.9, 1.25))
        if kind == 0:
            c = fcc_primitive(int(rng.choice(metals)), 3.6 * scale, sid=f"fcc-{k}")
        elif kind == 1:
            c = bcc_primitive(int(rng.choice(metals)), 2.9 * scale, sid=f"bcc-{k}")
        elif kind == 2:
            c = rocksalt_primitive(
                int(rng.choice(cations)), int(rng.choice(anions)), 5.2 * scale, sid=f"rs-{k}"
            )
        else:
            c = cscl(int(rng.choice(cations)), int(rng.choice(anions)), 3.5 * scale, sid=f"cscl-{k}")
        crystals.append(c)
        if target == "vpa":
            values.append(abs(np.linalg.det(c.lattice)) / c.num_atoms)
        else:
            values.append(float(c.num_atoms == 2))
    if target == "vpa":
        return CrystalDataset.from_crystals(crystals, np.array(values), ["vpa"], ["Å^3/atom"])
    return CrystalDataset.from_crystals(
        crystals, np.array(values), ["cell"], [""], task="classification", classes=["one", "two"]
    )


def hcp_ideal(z: int, d: float, sid: str) -> Crystal:
    """Ideal hcp (c/a = sqrt(8/3)) with nearest-neighbour distance ``d``: the same 12 neighbours at ``d``
    as fcc, so a 12-neighbour crystal graph cannot tell the two apart."""
    a, c = d, d * np.sqrt(8.0 / 3.0)
    lattice = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    return crystal(sid, lattice, [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]], [z, z])


def fcc_hcp_dataset(n_pairs: int = 30, seed: int = 0) -> CrystalDataset:
    """Pairs of fcc and ideal hcp metals with the same element and neighbour distance d; the target,
    natoms x d (Å), differs by a factor two within a pair although their crystal graphs are identical
    (the paper's Fig. S1 argument: the lattice needs more than the first shell)."""
    rng = np.random.default_rng(seed)
    crystals, values = [], []
    for k in range(n_pairs):
        z, d = int(rng.choice([13, 29, 47, 78, 79])), float(rng.uniform(2.5, 3.0))
        crystals += [fcc_primitive(z, d * np.sqrt(2), sid=f"fcc-{k}"), hcp_ideal(z, d, sid=f"hcp-{k}")]
        values += [d, 2 * d]
    return CrystalDataset.from_crystals(crystals, np.array(values), ["natoms_times_d"], ["Å"])


def phonondb_slice(shared_data, n: int, max_atoms: int | None = None, stride: int = 1) -> CrystalDataset:
    """Every ``stride``-th stable phonondb structure (at most ``max_atoms`` atoms), ``n`` of them."""
    from aiida_cgcnn.descriptors.global_descriptors import _element_tables
    from aiida_cgcnn.training.public_data import read_phonondb_thermal

    dataset, _ = read_phonondb_thermal(shared_data / "phonondb" / "phonondb-300K.jsonl.gz")
    radii = _element_tables()[1]
    keep = [
        k
        for k in range(len(dataset))
        if (max_atoms is None or dataset.num_atoms[k] <= max_atoms)
        and np.all(np.isfinite(radii[dataset.numbers[dataset.atom_ptr[k] : dataset.atom_ptr[k + 1]]]))
    ]
    return dataset.subset(np.array(keep[::stride][:n]))
