"""Resume: the checkpoint's settings, except those that only say how long to go on (epochs, patience,
time budget), which continue a finished run; settings that would make another run are refused;
fine-tuning a mismatched model fails clearly."""

import pytest

from aiida_cgcnn.demo import emt_alloys
from aiida_cgcnn.errors import CheckpointError, ConfigError
from aiida_cgcnn.training.checkpoint import load_checkpoint
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.trainer import Trainer

SMALL = {"atom_fea_len": 8, "n_conv": 1, "h_fea_len": 16}


@pytest.fixture(scope="module")
def dataset():
    structures, energies = emt_alloys(24, seed=2)
    return CrystalDataset.from_structures(structures, energies)[0]


@pytest.fixture(scope="module")
def three_epochs(dataset, tmp_path_factory):
    """A finished 3-epoch run (cosine schedule, decayed to zero at its end)."""
    out = tmp_path_factory.mktemp("three")
    Trainer(
        dataset,
        out,
        model_config=SMALL,
        train_config={"epochs": 3, "batch_size": 8, "time_budget": 1000.0},
        workers=1,
        progress=False,
    ).fit()
    return out / "last.pt"


def test_resume_takes_the_new_time_budget_and_epochs(dataset, three_epochs, tmp_path):
    trainer = Trainer(
        dataset,
        tmp_path,
        train_config={"epochs": 99, "time_budget": 50.0, "time_margin": 1.0},
        resume=three_epochs,
        progress=False,
    )
    assert trainer.config.epochs == 99 and trainer.config.batch_size == 8
    assert trainer.config.time_budget == 50.0 and trainer.config.time_margin == 1.0


def test_a_finished_run_continues_for_more_epochs(dataset, three_epochs, tmp_path):
    first = load_checkpoint(three_epochs)
    assert first["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the 3-epoch cosine ended
    result = Trainer(
        dataset, tmp_path / "more", train_config={"epochs": 5}, resume=three_epochs, workers=1, progress=False
    ).fit()
    assert result.stopped_reason == "completed" and result.epochs_run == 5
    state = load_checkpoint(result.last_checkpoint)
    assert [r["epoch"] for r in state["history"]] == [0, 1, 2, 3, 4]
    assert state["history"][:3] == first["history"]
    assert state["train_config"]["epochs"] == 5  # a later continuation starts from these settings
    # the schedule of a run planned for 5 epochs from the start: the same learning rates at every epoch
    straight = Trainer(
        dataset,
        tmp_path / "straight",
        model_config=SMALL,
        train_config={"epochs": 5, "batch_size": 8},
        workers=1,
        progress=False,
    ).fit()
    planned = [r["lr"] for r in load_checkpoint(straight.last_checkpoint)["history"]]
    assert [r["lr"] for r in state["history"][3:]] == pytest.approx(planned[3:], rel=1e-12)
    assert state["history"][3]["lr"] > 0.1 * planned[0] and state["history"][4]["lr"] == pytest.approx(0)
    assert state["state_dict"]["embedding.weight"].ne(first["state_dict"]["embedding.weight"]).any()


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle", "step"])
def test_a_smaller_batch_and_more_epochs_follow_the_schedule_planned_with_them(dataset, tmp_path, scheduler):
    """What the out-of-memory handler does: the same run, resumed with half the batch size."""
    train = {"batch_size": 8, "scheduler": scheduler, "lr_milestones": [1, 3]}
    first = Trainer(dataset, tmp_path / "a", SMALL, {**train, "epochs": 2}, workers=1, progress=False).fit()
    resumed = Trainer(
        dataset,
        tmp_path / "b",
        train_config={"epochs": 4, "batch_size": 4},
        resume=first.last_checkpoint,
        workers=1,
        progress=False,
    ).fit()
    planned = Trainer(
        dataset, tmp_path / "c", SMALL, {**train, "epochs": 4, "batch_size": 4}, workers=1, progress=False
    ).fit()
    continued = [r["lr"] for r in load_checkpoint(resumed.last_checkpoint)["history"]]
    straight = [r["lr"] for r in load_checkpoint(planned.last_checkpoint)["history"]]
    assert len(continued) == 4 and continued[2:] == pytest.approx(straight[2:], rel=1e-12)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"train_config": {"epochs": 5, "seed": 4}}, "seed 0 -> 4"),
        ({"train_config": {"optimizer": "sgd"}}, "optimizer 'adamw' -> 'sgd'"),
        ({"train_config": {"train_ratio": 0.5}}, "train_ratio 0.6 -> 0.5"),
        ({"model_config": {**SMALL, "n_conv": 2}}, "model n_conv 1 -> 2"),
        ({"model_config": {"architecture": "alignn"}}, "model architecture 'cgcnn' -> 'alignn'"),
        ({"atom_properties": ["group", "period"]}, "atom_properties"),
    ],
)
def test_resume_refuses_settings_that_make_another_run(dataset, three_epochs, tmp_path, settings, named):
    with pytest.raises(ConfigError, match="cannot resume") as caught:
        Trainer(dataset, tmp_path, resume=three_epochs, progress=False, **settings)
    assert named in str(caught.value) and "--init-from" in str(caught.value)


def test_resume_with_the_same_settings_given_again_is_no_change(dataset, three_epochs, tmp_path):
    trainer = Trainer(
        dataset,
        tmp_path,
        model_config=SMALL,
        train_config={"epochs": 4, "batch_size": 8},
        resume=three_epochs,
        progress=False,
    )
    assert trainer.config.epochs == 4


def test_continuing_with_fewer_epochs_than_done_is_refused(dataset, three_epochs, tmp_path):
    with pytest.raises(ConfigError, match="epochs must be at least the 3"):
        Trainer(dataset, tmp_path, train_config={"epochs": 2}, resume=three_epochs, progress=False)


def test_an_early_stopped_run_continues_only_with_a_larger_patience(dataset, tmp_path):
    noisy = Trainer(
        dataset,
        tmp_path / "run",
        model_config=SMALL,
        train_config={"epochs": 60, "batch_size": 4, "patience": 1, "lr": 0.05},
        workers=1,
        progress=False,
    ).fit()
    assert noisy.stopped_reason == "early_stopping"
    with pytest.raises(ConfigError, match="larger patience"):
        Trainer(dataset, tmp_path / "again", resume=noisy.last_checkpoint, progress=False)
    more = Trainer(
        dataset,
        tmp_path / "again",
        train_config={"patience": 1000},
        resume=noisy.last_checkpoint,
        workers=1,
        progress=False,
    ).fit()
    assert more.stopped_reason == "completed" and more.epochs_run == 60


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
