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
