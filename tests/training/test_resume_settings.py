"""Resume takes its settings from the checkpoint but the time budget; fine-tuning a mismatched
model fails clearly."""

import warnings

import pytest

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.errors import CheckpointError
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

SMALL = {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16}


@pytest.fixture(scope="module")
def dataset():
    structures, energies = emt_alloys(24, seed=2)
    return CrystalDataset.from_structures(structures, energies)[0]


def test_resume_keeps_the_checkpoint_settings_but_takes_the_new_time_budget(dataset, tmp_path):
    Trainer(
        dataset,
        tmp_path,
        model_config=SMALL,
        train_config={"epochs": 3, "batch_size": 8, "time_budget": 1000.0},
        progress=False,
    ).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(
            dataset,
            tmp_path,
            train_config={"epochs": 99, "time_budget": 50.0, "time_margin": 1.0},
            resume=tmp_path / "last.pt",
            progress=False,
        )
    assert trainer.config.epochs == 3 and trainer.config.batch_size == 8
    assert trainer.config.time_budget == 50.0 and trainer.config.time_margin == 1.0
    assert any("['epochs']" in str(w.message) for w in caught)


def test_fine_tuning_a_different_model_is_a_clear_error(dataset, tmp_path):
    first = Trainer(
        dataset, tmp_path / "a", model_config=SMALL, train_config={"epochs": 1}, progress=False
    ).fit()
    trainer = Trainer(
        dataset,
        tmp_path / "b",
        model_config={**SMALL, "n_conv": 2},
        train_config={"epochs": 1},
        init_from=first.best_checkpoint,
        progress=False,
    )
    with pytest.raises(CheckpointError, match=r"cannot fine-tune.*n_conv"):
        trainer.fit()
