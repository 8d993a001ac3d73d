"""CGCNN-style data directories (id_prop.csv + structure files) with valid and deliberately bad entries."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DataDir:
    path: Path
    valid: list[str]  # ids that must survive, in id_prop.csv order
    bad: dict[str, str] = field(default_factory=dict)  # id -> what is wrong with it (as a message fragment)

    @property
    def bad_ids(self) -> list[str]:
        return list(self.bad)


def _valid_structures(n: int, seed: int = 0):
    """n small ordered crystals of varied chemistry and size, with a smooth 'target'."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    cations, anions = ["Li", "Na", "K", "Rb", "Mg", "Ca"], ["F", "Cl", "Br", "O", "S"]
    out = []
    for k in range(n):
        cation, anion = cations[k % len(cations)], anions[(k // 2) % len(anions)]
        a = float(rng.uniform(4.2, 6.4))
        kind = k % 3
        if kind == 0:  # rock salt, 8 atoms
            s = Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
            )
        elif kind == 1:  # CsCl type, 2 atoms
            s = Structure(Lattice.cubic(a * 0.62), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
        else:  # fcc metal, 1 atom
            s = Structure(
                Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Cu"], [[0, 0, 0]]
            )
        out.append((s, round(float(a) - 5.0 + 0.3 * kind, 4)))
    return out


def write_valid_directory(path: Path, n: int = 10, seed: int = 0) -> DataDir:
    path.mkdir(parents=True, exist_ok=True)
    rows, valid = [], []
    for k, (structure, target) in enumerate(_valid_structures(n, seed)):
        sid = f"good-{k:02d}"
        structure.to(filename=str(path / f"{sid}.cif"))
        rows.append(f"{sid},{target}")
        valid.append(sid)
    (path / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return DataDir(path, valid)


def write_bad_directory(path: Path, n_valid: int = 10, graph_failure: bool = True) -> DataDir:
    """``n_valid`` good structures plus one of each kind of bad input, interleaved in id_prop.csv."""
    from pymatgen.core import DummySpecies, Lattice, Structure

    data = write_valid_directory(path, n_valid)
    rows = (path / "id_prop.csv").read_text().split()
    bad: dict[str, str] = {}

    Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).to(
        filename=str(path / "partial.cif")
    )
    bad["partial"] = "partial occupancy"
    Structure(Lattice.cubic(3.0), [DummySpecies("X"), "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(path / "dummy.cif")
    )
    bad["dummy"] = "unknown element"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen: "No Pauling electronegativity for Ar"
        Structure(Lattice([[0, 2.63, 2.63], [2.63, 0, 2.63], [2.63, 2.63, 0]]), ["Ar"], [[0, 0, 0]]).to(
            filename=str(path / "argon.cif")
        )
    bad["argon"] = "noble-gas"
    (path / "garbage.cif").write_text("data_garbage\nthis is not a crystal structure\n_cell_length_a ???\n")
    bad["garbage"] = "unreadable"
    Structure(Lattice.cubic(4.1), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(path / "nan-target.cif")
    )
    bad["nan-target"] = "missing or NaN target"
    Structure(Lattice.cubic(4.2), ["K", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(path / "no-target.cif")
    )
    bad["no-target"] = "missing or NaN target"
    bad["ghost"] = "does not exist"  # listed in id_prop.csv, no file
    extra = [
        "partial,1.0",
        "dummy,1.0",
        "argon,1.0",
        "garbage,1.0",
        "nan-target,nan",
        "no-target,",
        "ghost,1.0",
        f"{data.valid[3]},9.99",
    ]  # a second row with an id already used
    bad_rows = list(bad)
    if graph_failure:
        Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]]).to(filename=str(path / "lonely.cif"))
        bad["lonely"] = "no neighbour within"
        extra.append("lonely,1.0")
    # interleave the bad rows with the good ones
    merged = []
    for k, row in enumerate(rows):
        merged.append(row)
        if k < len(extra):
            merged.append(extra[k])
    merged += extra[len(rows) :]
    (path / "id_prop.csv").write_text("\n".join(merged) + "\n")
    duplicate = data.valid[3]
    return DataDir(
        path,
        data.valid,
        {
            **{k: bad[k] for k in bad_rows},
            duplicate: "duplicate id",
            **({"lonely": bad["lonely"]} if graph_failure else {}),
        },
    )


def valid_dataset(n: int = 20, seed: int = 0, noise: float = 0.0):
    """The structures of :func:`write_valid_directory` as an in-memory dataset (optionally noisy targets)."""
    from aiida_cgcnn.training.dataset import CrystalDataset

    pairs = _valid_structures(n, seed)
    targets = np.array([t for _, t in pairs])
    if noise:
        targets = targets + np.random.default_rng(seed + 1).normal(scale=noise, size=n)
    dataset, _ = CrystalDataset.from_structures(
        [s for s, _ in pairs], targets, ids=[f"good-{k:02d}" for k in range(n)], units=["eV"]
    )
    return dataset
