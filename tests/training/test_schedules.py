"""Learning-rate schedules, Huber loss, gradient clipping, SGD momentum and ``deterministic``, read off the
optimizer and the weights of real training runs and checked against closed forms and torch's schedulers."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from aiida_cgcnn.training.trainer import Trainer, split_indices
from tests.builders import SMALL_MODEL
from tests.datadirs import valid_dataset

LR = 0.01
#: 10 crystals: 8 train (two batches of 4), 2 validation
SPLIT = {"train_ratio": 0.8, "val_ratio": 0.2, "test_ratio": 0.0, "batch_size": 4}


class RecordingTrainer(Trainer):
    """A trainer that notes, at every training step, the learning rate, the loss with what it was computed
    from, the parameters before the step and whether deterministic algorithms were on."""

    def _optimizer(self, model):
        self.optimizer = super()._optimizer(model)
        self.parameter_names = [name for name, _ in model.named_parameters()]
        self.steps: list[dict] = []
        return self.optimizer

    def _loss(self, model, output, batch):
        loss = super()._loss(model, output, batch)
        self.steps.append(
            {
                "lr": self.optimizer.param_groups[0]["lr"],
                "loss": loss.item(),
                "prediction": output.prediction.detach().double().numpy(),
                "targets": batch.targets.double().numpy(),
                "target_std": model.head.target_std.double().numpy(),
                "parameters": {k: v.detach().clone() for k, v in model.named_parameters()},
                "deterministic": torch.are_deterministic_algorithms_enabled(),
            }
        )
        return loss


@functools.cache
def _crystals(n: int = 10):
    return valid_dataset(n)  # pymatgen builds these slowly: once per module


def _run(tmp_path, dataset=None, **train) -> RecordingTrainer:
    trainer = RecordingTrainer(
        dataset if dataset is not None else _crystals(),
        tmp_path,
        model_config=dict(SMALL_MODEL),
        train_config={"lr": LR, **SPLIT, **train},
        workers=1,
        progress=False,
    )
    trainer.fit()
    return trainer


def _lrs(trainer) -> list[float]:
    return [step["lr"] for step in trainer.steps]


def _final_parameters(trainer) -> dict[str, torch.Tensor]:
    state = torch.load(trainer.output_dir / "last.pt", weights_only=True)["state_dict"]
    return {name: state[name] for name in trainer.parameter_names}


def test_step_schedule_multiplies_at_its_milestone_epochs(tmp_path):
    trainer = _run(tmp_path, epochs=5, scheduler="step", lr_milestones=[1, 3, 7], lr_gamma=0.5)
    # two steps per epoch; epoch e runs at LR * 0.5^(milestones <= e); milestone 7 lies past the end
    expected = [LR * 0.5 ** sum(m <= e for m in (1, 3)) for e in range(5) for _ in range(2)]
    assert _lrs(trainer) == pytest.approx(expected, rel=1e-12)
    # torch's MultiStepLR stepped once per epoch, as it is meant to be, gives the same
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 3], gamma=0.5)
    by_epoch = []
    for _ in range(5):
        by_epoch += [optimizer.param_groups[0]["lr"]] * 2
        optimizer.step()
        reference.step()
    assert _lrs(trainer) == pytest.approx(by_epoch, rel=1e-12)


def test_step_schedule_with_an_edge_cap_changes_at_epoch_starts(tmp_path):
    """With ``max_edges_per_batch`` the epochs differ in their batch counts; the milestones still fall on
    the first step of their epoch."""
    full = _crystals(15)
    # cells of 2 and 8 atoms only: a batch of a lone 1-atom cell cannot be batch-normalised
    dataset = full.subset(np.flatnonzero(full.num_atoms > 1))
    trainer = _run(
        tmp_path,
        dataset,
        epochs=4,
        scheduler="step",
        lr_milestones=[2],
        lr_gamma=0.1,
        max_edges_per_batch=150,
    )
    train = split_indices(10, 0.8, 0.2, 0.0, 0)["train"]
    counts = [len(trainer._train_batches(trainer._epoch_order(train, e))) for e in range(4)]
    assert len(set(counts)) > 1, counts  # the case at hand: uneven epochs
    expected = [LR * (0.1 if e >= 2 else 1.0) for e, n in enumerate(counts) for _ in range(n)]
    assert _lrs(trainer) == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_per_batch_to_zero(tmp_path):
    trainer = _run(tmp_path, epochs=3, scheduler="cosine")
    total = 3 * 2
    expected = [LR / 2 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    assert _lrs(trainer) == pytest.approx(expected, rel=1e-9)
    history = torch.load(tmp_path / "last.pt", weights_only=True)["history"]
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-15)  # after the last step


def test_onecycle_schedule_per_batch_over_the_whole_run(tmp_path):
    trainer = _run(tmp_path, epochs=3, scheduler="onecycle")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=6)
    expected = []
    for _ in range(6):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert _lrs(trainer) == pytest.approx(expected, rel=1e-12)
    assert max(expected) == pytest.approx(LR, rel=0.05) and expected[0] < LR / 10


def test_no_schedule_keeps_the_rate(tmp_path):
    assert _lrs(_run(tmp_path, epochs=2, scheduler="none")) == [LR] * 4


def test_huber_loss_on_standardised_errors(tmp_path):
    trainer = _run(tmp_path, epochs=2, scheduler="none", loss="huber")
    quadratic = linear = 0
    for step in trainer.steps:
        error = (step["prediction"] - step["targets"]) / step["target_std"]
        quadratic += int(np.sum(np.abs(error) <= 1))
        linear += int(np.sum(np.abs(error) > 1))
        huber = np.where(np.abs(error) <= 1, 0.5 * error**2, np.abs(error) - 0.5).mean()
        assert step["loss"] == pytest.approx(huber, rel=1e-5)
    assert quadratic and linear  # both branches of the loss were exercised


def _parameter_change(before: dict, after: dict) -> float:
    return math.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))


def test_grad_clip_bounds_the_step(tmp_path):
    """One plain SGD step with lr 1: the weights move by exactly the clipped gradient norm."""
    common = {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "momentum": 0.0, "lr": 1.0}
    clipped = _run(tmp_path / "clipped", scheduler="none", grad_clip=1e-3, **common)
    assert len(clipped.steps) == 1
    before = clipped.steps[0]["parameters"]
    assert _parameter_change(before, _final_parameters(clipped)) == pytest.approx(1e-3, rel=1e-3)
    free = _run(tmp_path / "free", scheduler="none", **common)
    assert _parameter_change(before, _final_parameters(free)) > 0.01  # the gradient was larger


def test_sgd_momentum_carries_the_previous_step(tmp_path):
    """Two SGD steps of one batch each: with momentum m, the second step adds m times the first."""
    common = {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.1, "scheduler": "none"}
    heavy = _run(tmp_path / "momentum", momentum=0.5, **common)
    plain = _run(tmp_path / "plain", momentum=0.0, **common)
    theta0, theta1 = heavy.steps[0]["parameters"], heavy.steps[1]["parameters"]
    for name, value in plain.steps[1]["parameters"].items():
        torch.testing.assert_close(value, theta1[name])  # the first step is the same
    final_heavy, final_plain = _final_parameters(heavy), _final_parameters(plain)
    largest = 0.0
    for name in theta0:
        first_step = theta1[name] - theta0[name]
        torch.testing.assert_close(final_heavy[name] - final_plain[name], 0.5 * first_step, atol=2e-6, rtol=0)
        largest = max(largest, float(first_step.abs().max()))
    assert largest > 1e-3  # the first step was no rounding noise


@pytest.fixture
def restore_determinism():
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def test_deterministic_turns_on_deterministic_algorithms_for_training(tmp_path, restore_determinism):
    torch.use_deterministic_algorithms(False)
    assert not any(s["deterministic"] for s in _run(tmp_path / "free", epochs=1).steps)
    steps = _run(tmp_path / "deterministic", epochs=1, deterministic=True).steps
    assert steps and all(s["deterministic"] for s in steps)
