"""``stop_epoch``: a run paused at the search's rungs and resumed goes on exactly as the same run
without pauses (deterministic mode): the same weights, bit for bit, the same learning curve."""

import numpy as np
import pytest
import torch

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.errors import ConfigError
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

SMALL = {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16}
SETTINGS = {"epochs": 6, "batch_size": 8, "lr": 0.01, "scheduler": "cosine", "seed": 5, "deterministic": True}


@pytest.fixture(scope="module")
def dataset():
    structures, energies = emt_alloys(24, seed=4)
    return CrystalDataset.from_structures(structures, energies)[0]


def _fit(dataset, out, resume=None, **extra):
    return Trainer(
        dataset, out, model_config=SMALL, train_config={**SETTINGS, **extra}, workers=1, progress=False,
        resume=resume,
    ).fit()  # fmt: skip


def test_paused_at_rungs_and_resumed_equals_the_uninterrupted_run(dataset, tmp_path):
    straight = _fit(dataset, tmp_path / "straight")
    paused = tmp_path / "paused"
    first = _fit(dataset, paused, stop_epoch=2)
    assert first.stopped_reason == "paused" and first.epochs_run == 2
    assert load_checkpoint(paused / "last.pt")["train_config"]["epochs"] == 6  # still planned for 6
    second = _fit(dataset, paused, resume=paused / "last.pt", stop_epoch=4)
    assert second.stopped_reason == "paused" and second.epochs_run == 4
    last = _fit(dataset, paused, resume=paused / "last.pt")  # no stop_epoch: the pause is not inherited
    assert last.stopped_reason == "completed" and last.epochs_run == 6

    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(last.last_checkpoint)
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    for x, y in zip(a["history"], b["history"], strict=True):
        assert {k: v for k, v in x.items() if k != "time_s"} == {k: v for k, v in y.items() if k != "time_s"}
    assert np.isclose(straight.metrics["val"]["mae"], last.metrics["val"]["mae"], rtol=0, atol=0)


def test_a_bad_stop_epoch_is_named(dataset, tmp_path):
    with pytest.raises(ConfigError, match="stop_epoch must be >= 1"):
        _fit(dataset, tmp_path, stop_epoch=0)
