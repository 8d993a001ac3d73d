"""Fixtures of the phonon work-chain tests: the shared AiiDA fixtures, tiny trained models of U and Cv
(and of the wrong target or unit), EMT crystals and phonondb's data."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from tests.aiida_fixtures import *  # noqa: F403
from tests.phonons.conftest import bcc_copper, fcc_metals, phonondb  # noqa: F401

#: Reference settings small enough for seconds per crystal: 64-atom supercells, a 20 Å mesh.
EMT_PHONOPY = {"supercell_matrix": [4, 4, 4], "mesh": 20.0}


def _train(tmp_path, names, units, seed=0):
    """A two-epoch CGCNN on eight metals with made-up but plausible U and Cv per primitive cell."""
    from aiida_cgcnn.training.dataset import CrystalDataset
    from aiida_cgcnn.training.trainer import Trainer

    metals = ["Cu", "Al", "Ni", "Ag", "Au", "Pd", "Pt", "Cu"]
    structures = [
        bulk(m, "fcc", a=a)
        for m, a in zip(metals, [3.6, 4.05, 3.52, 4.09, 4.08, 3.89, 3.92, 3.7], strict=True)
    ]
    rng = np.random.default_rng(seed)
    targets = np.column_stack([7.5 + rng.normal(0, 0.3, 8), 23.5 + rng.normal(0, 0.5, 8)])[:, : len(names)]
    dataset, _ = CrystalDataset.from_structures(
        structures, targets, ids=[f"m{k}" for k in range(8)], target_names=names, units=units
    )
    result = Trainer(
        dataset,
        tmp_path,
        model_config={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16},
        train_config={"epochs": 2, "batch_size": 4, "seed": seed},
        workers=1,
        progress=False,
    ).fit()
    return result.best_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Checkpoints: a model of U and Cv, one of U and one of Cv alone, one of another target and one
    of U and Cv per mole of atoms in eV."""
    root = tmp_path_factory.mktemp("phonon-models")
    return {
        "both": _train(root / "both", ["U", "Cv"], ["kJ/mol", "J/(K mol)"]),
        "u": _train(root / "u", ["U"], ["kJ/mol"], seed=1),
        "cv": _train(root / "cv", ["Cv"], ["J/(K mol)"], seed=2),
        "energy": _train(root / "energy", ["emt_energy"], ["eV/atom"]),
        "ev": _train(root / "ev", ["U", "Cv"], ["eV", "J/(K mol)"]),
    }


@pytest.fixture
def models(aiida_profile, checkpoints):
    from aiida_cgcnn.data.model import ModelData

    return {key: ModelData.get_or_create(path) for key, path in checkpoints.items()}
