"""EMT phonons of fcc metals (computed here, seconds) and phonondb's real DFT force sets (skipped when
the data is absent)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_cgcnn.phonons import (
    PhononSettings,
    build_phonopy,
    compute_forces,
    displaced_supercells,
    generate_displacements,
)

#: Small but converged enough for the tests: 4x4x4 primitive supercells (64 atoms), a 20 Å mesh.
EMT_SETTINGS = PhononSettings(supercell_matrix=(4, 4, 4), mesh=20.0)


def emt_phonopy(atoms, settings: PhononSettings = EMT_SETTINGS):
    """A phonopy with displacements and EMT forces (not yet force constants), and the forces."""
    phonon = build_phonopy(atoms, settings)
    generate_displacements(phonon, settings)
    forces = compute_forces(displaced_supercells(phonon), EMT())
    return phonon, forces


@pytest.fixture(scope="session")
def fcc_metals():
    """fcc Cu, Al and Ni (one atom per primitive cell) at their EMT lattice constants."""
    return {"Cu": bulk("Cu", "fcc", a=3.59), "Al": bulk("Al", "fcc", a=4.05), "Ni": bulk("Ni", "fcc", a=3.52)}


@pytest.fixture(scope="session")
def bcc_copper():
    """bcc Cu: dynamically unstable under EMT (as in reality), lowest frequency about -1.1 THz."""
    return bulk("Cu", "bcc", a=2.87)


@pytest.fixture(scope="session")
def phonondb(shared_data):
    """The force-set archives and the 300 K table of phonondb, by material name."""
    folder = shared_data / "phonondb"
    archives = sorted((folder / "forcesets").glob("*.tar.lzma"))
    if not archives or not (folder / "phonondb-300K.jsonl.gz").is_file():
        pytest.skip("phonondb force sets are absent from the real data")
    with gzip.open(folder / "phonondb-300K.jsonl.gz", "rt") as handle:
        table = {record["name"]: record for record in map(json.loads, handle)}
    return {"archives": {a.name[: -len(".tar.lzma")]: a for a in archives}, "table": table}


def gamma_modes(difference: float, quantum: float) -> float:
    """``difference`` in units of one Γ acoustic mode's share (see PhononSettings.gamma_acoustic)."""
    return float(np.asarray(difference) / quantum)


def assert_reproduces_table(u: float, cv: float, n_qpoints: int, record: dict, name: str = "") -> None:
    """phonopy's U and Cv at 300 K against phonondb's row, on any machine.

    Γ acoustic modes enter phonopy's sums by the sign of their ~1e-8 THz noise, which differs between
    machines (see PhononSettings.gamma_acoustic): each one counted here and not in the table (or the
    reverse) adds k_B per q-point to Cv and k_B T to U (its classical limit), about 1e-4 of Cv at a mesh
    length of 50. So the difference must be a whole number of such modes (at most the three acoustic
    modes), and the rest agree to 1e-4.
    """
    from aiida_cgcnn.phonons import GAS_CONSTANT_JKMOL

    share = GAS_CONSTANT_JKMOL / n_qpoints
    modes = (cv - record["Cv_JKmol"]) / share
    assert modes == pytest.approx(round(modes), abs=1e-4) and abs(round(modes)) <= 3, (name, modes)
    u_modes = round(modes) * GAS_CONSTANT_JKMOL * 300.0 / 1000.0 / n_qpoints
    assert u == pytest.approx(record["U_kJmol"] + u_modes, rel=1e-4), name
    assert cv == pytest.approx(record["Cv_JKmol"] + round(modes) * share, rel=1e-4), name
