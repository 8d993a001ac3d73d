"""Fixtures of the screening tests: the shared AiiDA fixtures (real profile, the real ``aiida-cgcnn``
command on localhost) and small ensembles of models trained in seconds on EMT alloys."""

from __future__ import annotations

import pytest

from tests.aiida_fixtures import *  # noqa: F403


def train_member(dataset, folder, seed: int):
    """A small CGCNN trained in-process for two epochs (its checkpoint records its dataset)."""
    from aiida_cgcnn.training.trainer import Trainer
    from tests.builders import SMALL_MODEL

    result = Trainer(
        dataset,
        folder,
        model_config=dict(SMALL_MODEL),
        train_config={"epochs": 2, "batch_size": 8, "seed": seed},
        workers=1,
        progress=False,
    ).fit()
    return result.best_checkpoint


@pytest.fixture(scope="session")
def member_checkpoints(tmp_path_factory, alloy_data):
    """Two members (seeds 1 and 2) trained on the 40 EMT alloys of ``alloy_data``."""
    from aiida_cgcnn.training.dataset import CrystalDataset

    atoms, energies = alloy_data
    dataset, _ = CrystalDataset.from_structures(
        atoms, energies, ids=[f"alloy-{k}" for k in range(len(atoms))], target_names=["emt_energy"],
        units=["eV/atom"],
    )  # fmt: skip
    root = tmp_path_factory.mktemp("screen-members")
    return dataset, [train_member(dataset, root / f"seed-{seed}", seed) for seed in (1, 2)]


@pytest.fixture
def members(aiida_profile, member_checkpoints):
    """The members as ``ModelData``, with their training dataset stored (as a dataset node made from
    a command-line run is found by its content)."""
    from aiida_cgcnn.data.dataset import CrystalDatasetData
    from aiida_cgcnn.data.model import ModelData

    dataset, paths = member_checkpoints
    CrystalDatasetData.from_dataset(dataset).store()
    return {f"m{k}": ModelData.get_or_create(path) for k, path in enumerate(paths)}
