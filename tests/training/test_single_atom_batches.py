"""A batch of one 1-atom crystal cannot train through BatchNorm: elemental datasets must train whatever
their size modulo the batch size, with and without an edge cap."""

import numpy as np
import pytest
from ase.build import bulk

from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer


def _metals(n: int) -> CrystalDataset:
    rng = np.random.default_rng(3)
    lattice = rng.uniform(3.5, 3.7, n)
    atoms = [bulk("Cu", "fcc", a=float(a)) for a in lattice]
    dataset, _ = CrystalDataset.from_structures(
        atoms, (lattice - 3.6)[:, None], ids=[f"cu{k}" for k in range(n)]
    )
    return dataset


@pytest.mark.parametrize("max_edges", [None, 30])
def test_one_atom_crystals_train_when_a_batch_would_hold_a_single_atom(tmp_path, max_edges):
    # 5 crystals, batch size 4, all in training: the last batch would be one 1-atom crystal
    trainer = Trainer(
        _metals(5),
        tmp_path / "run",
        model_config={"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 8},
        train_config={
            "epochs": 2,
            "batch_size": 4,
            "train_ratio": 1.0,
            "val_ratio": 0.0,
            "test_ratio": 0.0,
            "seed": 0,
            "max_edges_per_batch": max_edges,
        },
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
    )
    result = trainer.fit()
    assert result.epochs_run == 2
    curve = (tmp_path / "run" / "learning_curve.csv").read_text().splitlines()
    assert len(curve) == 3 and "nan" not in curve[-1].lower()
