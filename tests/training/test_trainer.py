"""The trainer: splits, checkpoints, resume, determinism, early stopping, time budget, divergence."""

from __future__ import annotations

import csv
import json
import shutil
import time

import numpy as np
import pytest
import torch

from aiida_cgcnn.errors import CheckpointError, DatasetError
from aiida_cgcnn.graph.crystal_graph import GraphSettings
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.training.checkpoint import load_checkpoint, save_checkpoint
from aiida_cgcnn.training.trainer import LossDivergedError, TrainConfig, Trainer, split_indices
from tests.builders import SMALL_MODEL
from tests.datadirs import valid_dataset

QUICK = {"epochs": 3, "batch_size": 8}


@pytest.fixture(scope="module")
def dataset():
    return valid_dataset(20)


def capture_model(trainer: Trainer) -> dict:
    """Keep a reference to the model the trainer builds (the real one; nothing is replaced)."""
    holder = {}
    build = trainer._build_model

    def spy(train_idx):
        holder["model"] = build(train_idx)
        return holder["model"]

    trainer._build_model = spy
    return holder


def without_times(history):
    return [{k: v for k, v in record.items() if k != "time_s"} for record in history]


def assert_state_dicts_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- split --------------------------------------------------------------------------------------


def test_default_split_is_60_20_20():
    split = split_indices(100, 0.6, 0.2, 0.2, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [60, 20, 20]
    together = np.concatenate(list(split.values()))
    assert sorted(together.tolist()) == list(range(100))
    assert split_indices(100, 0.6, 0.2, 0.2, seed=0)["test"].tolist() == split["test"].tolist()
    assert split_indices(100, 0.6, 0.2, 0.2, seed=1)["test"].tolist() != split["test"].tolist()
    defaults = TrainConfig()
    assert (defaults.train_ratio, defaults.val_ratio, defaults.test_ratio) == (0.6, 0.2, 0.2)


@pytest.mark.parametrize("n", [3, 7, 9, 11, 13, 17, 49, 101])
def test_split_with_ratios_summing_to_one_loses_no_structure(n):
    # 7 * (0.6, 0.2, 0.2) rounds to (4, 1, 1): the seventh structure must still be used (for training)
    split = split_indices(n, 0.6, 0.2, 0.2, seed=0)
    together = np.concatenate([split[k] for k in ("train", "val", "test")])
    assert sorted(together.tolist()) == list(range(n))
    assert len(split["val"]) == round(0.2 * n) and len(split["test"]) == round(0.2 * n)


def test_zero_test_ratio_gives_an_empty_test_set():
    split = split_indices(50, 0.8, 0.2, 0.0, seed=0)
    assert len(split["test"]) == 0
    assert len(split["train"]) == 40 and len(split["val"]) == 10
    split = split_indices(50, 1.0, 0.0, 0.0, seed=0)
    assert len(split["train"]) == 50 and len(split["val"]) == 0 and len(split["test"]) == 0
    # ratios summing below one leave structures out rather than inflating a part
    split = split_indices(50, 0.5, 0.1, 0.1, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [25, 5, 5]


def test_split_too_small_for_training():
    with pytest.raises(DatasetError, match="no training set"):
        split_indices(2, 0.2, 0.4, 0.4, seed=0)


def test_split_is_saved_in_the_checkpoint_and_empty_test_means_empty(tmp_path, dataset):
    result = Trainer(
        dataset,
        tmp_path,
        SMALL_MODEL,
        {**QUICK, "train_ratio": 0.8, "val_ratio": 0.2, "test_ratio": 0.0},
        workers=1,
    ).fit()
    state = load_checkpoint(result.best_checkpoint)
    expected = split_indices(20, 0.8, 0.2, 0.0, seed=0)
    for part in ("train", "val", "test"):
        assert state["split"][part].tolist() == expected[part].tolist()
    assert state["split"]["test"].numel() == 0
    assert result.metrics["num_test"] == 0 and "test" not in result.metrics
    assert not (tmp_path / "test_predictions.csv").exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"train_ratio": 0.0}, "train_ratio"),
        ({"val_ratio": -0.1}, ">= 0"),
        ({"train_ratio": 0.9}, "sum above 1"),
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"lr": 0}, "lr"),
        ({"scheduler": "plateau"}, "scheduler"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_bad_training_settings_are_rejected(tmp_path, dataset, bad, message):
    with pytest.raises(ValueError, match=message):
        Trainer(dataset, tmp_path, SMALL_MODEL, {**QUICK, **bad}, workers=1)


def test_unknown_training_setting_is_rejected(tmp_path, dataset):
    with pytest.raises(ValueError, match="unknown training settings"):
        Trainer(dataset, tmp_path, SMALL_MODEL, {**QUICK, "epochz": 3}, workers=1)


# --- outputs and checkpoints --------------------------------------------------------------------


def test_outputs_and_checkpoint_contents(tmp_path, dataset):
    settings = GraphSettings(radius=7.0, max_neighbors=10)
    result = Trainer(dataset, tmp_path, SMALL_MODEL, QUICK, graph_settings=settings, workers=1).fit()
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "learning_curve.csv",
        "test_predictions.csv",
        "skipped.json",
    ):
        assert (tmp_path / name).is_file(), name
    assert result.stopped_reason == "completed" and result.epochs_run == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and metrics["stopped_reason"] == "completed"
    assert (metrics["num_train"], metrics["num_val"], metrics["num_test"]) == (12, 4, 4)
    assert set(metrics["test"]) == {"mae", "rmse", "mad", "mae_over_mad", "r2"}
    with open(tmp_path / "learning_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"train_loss", "lr", "val_mae", "time_s"} <= set(rows[0])

    # torch.load with weights_only=True reads it: no pickled code
    raw = torch.load(result.best_checkpoint, weights_only=True)
    assert raw["format"] == "aiida-cgcnn-checkpoint"
    torch.testing.assert_close(raw["state_dict"]["atom_table"], atom_feature_table(), rtol=0, atol=0)
    assert GraphSettings.from_dict(raw["graph_settings"]) == settings
    assert raw["targets"] == {"names": ["target"], "units": ["eV"], "task": "regression", "classes": []}
    assert raw["model_config"]["atom_fea_len"] == 16 and raw["model_config"]["n_conv"] == 2
    assert raw["dataset"]["sha256"] == dataset.sha256()
    assert raw["metrics"]["test"] == pytest.approx(metrics["test"])
    assert all(v.device.type == "cpu" for v in raw["state_dict"].values())
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert {"optimizer_state", "scheduler_state", "history", "epoch"} <= set(last)
    assert last["epoch"] == 2 and len(last["history"]) == 3

    # test_predictions.csv holds the test structures with their targets and the best model's predictions
    with open(tmp_path / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    test_ids = dataset.ids[raw["split"]["test"].numpy()].tolist()
    assert [r["id"] for r in rows] == test_ids
    predicted = Predictor.from_checkpoint(result.best_checkpoint).predict(
        dataset.subset(raw["split"]["test"].numpy())
    )
    np.testing.assert_allclose([float(r["target_pred"]) for r in rows], predicted.values[:, 0], rtol=1e-5)


def test_predictor_from_best_checkpoint_matches_the_in_memory_model(tmp_path, dataset):
    # no validation set: the last epoch is the best, so best.pt holds the final in-memory weights
    trainer = Trainer(
        dataset,
        tmp_path,
        SMALL_MODEL,
        {**QUICK, "train_ratio": 1.0, "val_ratio": 0.0, "test_ratio": 0.0},
        workers=1,
    )
    holder = capture_model(trainer)
    result = trainer.fit()
    model = holder["model"].eval()
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert_state_dicts_equal(
        predictor.model.state_dict(), {k: v.cpu() for k, v in model.state_dict().items()}
    )
    batch = trainer.prepared.graphs.batch(np.arange(len(dataset)))
    with torch.no_grad():
        expected = model(batch).prediction.double().numpy()
    # from the dataset, and from pymatgen structures whose graphs the Predictor builds itself
    np.testing.assert_array_equal(predictor.predict(dataset).values, expected)
    structures = [c.to_pymatgen() for c in dataset.crystals()]
    from_structures = predictor.predict(structures, ids=dataset.ids.tolist())
    assert from_structures.ids == dataset.ids.tolist()
    np.testing.assert_allclose(from_structures.values, expected, rtol=1e-5, atol=1e-6)
    assert predictor.units == ["eV"] and predictor.target_names == ["target"]
    assert predictor.metrics["train"]["mae"] == pytest.approx(
        float(np.mean(np.abs(expected[:, 0] - dataset.targets[:, 0]))), rel=1e-5
    )


def test_atom_property_subset_travels_with_the_checkpoint(tmp_path, dataset):
    result = Trainer(
        dataset, tmp_path, SMALL_MODEL, QUICK, atom_properties=["group", "period"], workers=1
    ).fit()
    state = load_checkpoint(result.best_checkpoint)
    assert state["atom_properties"] == ["group", "period"]
    assert state["state_dict"]["atom_table"].shape == (101, 27)
    values = Predictor.from_checkpoint(result.best_checkpoint).predict(dataset).values
    assert values.shape == (20, 1) and np.isfinite(values).all()


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an aiida-cgcnn checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "partial.pt", {"model_config": {}})
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "partial.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("this code must not run",))

    torch.save({"format": "aiida-cgcnn-checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_checkpoint_predicts_on_cpu(tmp_path, dataset):
    result = Trainer(dataset, tmp_path, SMALL_MODEL, QUICK, device="cpu", workers=1).fit()
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert all(p.device.type == "cpu" for p in predictor.model.parameters())
    assert np.isfinite(predictor.predict(dataset).values).all()


# --- resume, determinism ------------------------------------------------------------------------


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, dataset):
    config = {"epochs": 4, "batch_size": 4}  # cosine schedule over 4 epochs: its state must resume too
    model_config = {**SMALL_MODEL, "dropout": 0.2}  # dropout draws from the per-epoch seed too
    straight = Trainer(dataset, tmp_path / "straight", model_config, config, workers=1)
    # keep the checkpoint the uninterrupted run wrote after its second epoch: what an interrupted run leaves
    write_curve = straight._write_learning_curve

    def keep_after_two(history):
        write_curve(history)
        if len(history) == 2:
            shutil.copy(tmp_path / "straight" / "last.pt", tmp_path / "after-2.pt")

    straight._write_learning_curve = keep_after_two
    straight.fit()
    interrupted = load_checkpoint(tmp_path / "after-2.pt")
    assert interrupted["epoch"] == 1 and len(interrupted["history"]) == 2

    resumed = Trainer(dataset, tmp_path / "resumed", resume=tmp_path / "after-2.pt", workers=1).fit()
    assert resumed.epochs_run == 4
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert_state_dicts_equal(a["state_dict"], b["state_dict"])
    assert without_times(a["history"]) == without_times(b["history"])
    assert a["best_epoch"] == b["best_epoch"] and a["best_score"] == b["best_score"]
    for part in a["split"]:
        assert torch.equal(a["split"][part], b["split"][part])
    assert a["optimizer_state"]["state"].keys() == b["optimizer_state"]["state"].keys()
    for k, v in a["optimizer_state"]["state"].items():
        assert torch.equal(v["exp_avg"], b["optimizer_state"]["state"][k]["exp_avg"])
    # the resumed run had to change something: its weights moved on from epoch 2
    assert not torch.equal(interrupted["state_dict"]["embedding.weight"], b["state_dict"]["embedding.weight"])


def test_resume_refuses_another_dataset(tmp_path, dataset):
    Trainer(dataset, tmp_path / "run", SMALL_MODEL, {"epochs": 1, "batch_size": 8}, workers=1).fit()
    other = valid_dataset(20, noise=0.1)
    with pytest.raises(DatasetError, match="differs"):
        Trainer(other, tmp_path / "again", resume=tmp_path / "run" / "last.pt", workers=1)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, dataset):
    def weights(name, seed):
        Trainer(
            dataset, tmp_path / name, {**SMALL_MODEL, "dropout": 0.1}, {**QUICK, "seed": seed}, workers=1
        ).fit()
        return load_checkpoint(tmp_path / name / "last.pt")

    a, b, c = weights("a", 3), weights("b", 3), weights("c", 4)
    assert_state_dicts_equal(a["state_dict"], b["state_dict"])
    assert without_times(a["history"]) == without_times(b["history"])
    assert not torch.equal(a["state_dict"]["embedding.weight"], c["state_dict"]["embedding.weight"])


def test_init_from_starts_from_the_checkpoint_weights(tmp_path, dataset):
    first = Trainer(dataset, tmp_path / "first", SMALL_MODEL, {"epochs": 2, "batch_size": 8}, workers=1).fit()
    trainer = Trainer(
        dataset,
        tmp_path / "tuned",
        SMALL_MODEL,
        {"epochs": 1, "batch_size": 8, "seed": 5},
        init_from=first.best_checkpoint,
        workers=1,
    )
    build = trainer._build_model
    initial = {}

    def spy(idx):
        model = build(idx)
        initial.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model

    trainer._build_model = spy
    trainer.fit()
    assert_state_dicts_equal(initial, load_checkpoint(first.best_checkpoint)["state_dict"])


# --- stopping -----------------------------------------------------------------------------------


def test_early_stopping_with_patience(tmp_path):
    noisy = valid_dataset(20, noise=1.0)
    patience = 2
    result = Trainer(
        noisy,
        tmp_path,
        SMALL_MODEL,
        {"epochs": 60, "batch_size": 4, "patience": patience, "lr": 1e-2},
        workers=1,
    ).fit()
    assert result.stopped_reason == "early_stopping"
    assert result.epochs_run < 60
    history = load_checkpoint(result.last_checkpoint)["history"]
    maes = [r["val_mae"] for r in history]
    best_epoch = result.metrics["best_epoch"]
    assert best_epoch == result.metrics["last_epoch"] - patience
    assert maes[best_epoch] == min(maes)
    assert all(m >= maes[best_epoch] for m in maes[best_epoch + 1 :])
    assert load_checkpoint(result.best_checkpoint)["epoch"] == best_epoch


def test_time_budget_stops_cleanly_and_resumes(tmp_path, dataset):
    config = {"epochs": 100000, "batch_size": 8, "time_budget": 2.0, "time_margin": 0.0}
    result = Trainer(dataset, tmp_path / "run", SMALL_MODEL, config, workers=1).fit()
    assert result.stopped_reason == "time_budget"
    assert 1 <= result.epochs_run < 100000
    assert result.last_checkpoint.is_file() and result.best_checkpoint.is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped_reason"] == "time_budget" and "test" in metrics
    first = load_checkpoint(result.last_checkpoint)
    assert len(first["history"]) == result.epochs_run

    resumed = Trainer(dataset, tmp_path / "resumed", resume=result.last_checkpoint, workers=1).fit()
    assert resumed.stopped_reason == "time_budget"
    assert resumed.epochs_run > result.epochs_run
    second = load_checkpoint(resumed.last_checkpoint)
    assert without_times(second["history"][: result.epochs_run]) == without_times(first["history"])
    assert [r["epoch"] for r in second["history"]] == list(range(resumed.epochs_run))


def test_time_budget_stops_before_budget_minus_margin(tmp_path, dataset):
    """An epoch starts only when 1.2 x the longest epoch so far still ends by ``time_budget -
    time_margin`` (the budget counts from the trainer's creation). Epochs made to last over a second
    bound the stop epoch whatever the machine's load."""
    budget, margin, epoch_s = 12.0, 5.0, 1.5
    config = {"epochs": 1000, "batch_size": 8, "time_budget": budget, "time_margin": margin}
    trainer = Trainer(dataset, tmp_path, SMALL_MODEL, config, workers=1)
    ends: list[float] = []  # when each epoch ended, then when training ended
    train_epoch, save, finish = trainer._train_epoch, trainer._save_checkpoints, trainer._finish

    def slow_epoch(*args):
        time.sleep(epoch_s)
        return train_epoch(*args)

    def saved(*args):
        ends.append(time.monotonic() - trainer.start_time)
        return save(*args)

    def finished(*args):
        ends.append(time.monotonic() - trainer.start_time)
        return finish(*args)

    trainer._train_epoch, trainer._save_checkpoints, trainer._finish = slow_epoch, saved, finished
    result = trainer.fit()
    assert result.stopped_reason == "time_budget"
    times = [r["time_s"] for r in load_checkpoint(result.last_checkpoint)["history"]]
    assert len(times) == result.epochs_run == len(ends) - 1 and min(times) >= epoch_s
    # epoch k starts after 1.5k s and needs 1.8 s more: at most epochs 0-3 fit in 12 - 5 s
    assert 1 <= result.epochs_run <= 1 + int((budget - margin - 1.2 * epoch_s) / epoch_s) == 4
    # an epoch the rule started ended inside budget - margin (the first always runs), and one more
    # would not have fitted
    assert result.epochs_run == 1 or ends[-2] <= budget - margin
    assert ends[-1] + 1.2 * max(times) > budget - margin


def test_diverging_loss_raises(tmp_path, dataset):
    with pytest.raises(LossDivergedError, match="epoch 0"):
        Trainer(dataset, tmp_path, SMALL_MODEL, {"epochs": 5, "batch_size": 4, "lr": 1e6}, workers=1).fit()


# --- learning ------------------------------------------------------------------------------------


def test_classification_learns_the_lattice_type(tmp_path):
    from aiida_cgcnn.training.dataset import CrystalDataset
    from tests.builders import bcc_primitive, fcc_primitive, simple_cubic

    rng = np.random.default_rng(0)
    metals = [13, 29, 47, 79, 28, 46, 78, 26, 24, 74, 42, 23, 41, 73, 11, 19, 3]
    crystals, labels = [], []
    for k in range(60):
        kind, z, volume = k % 3, int(rng.choice(metals)), rng.uniform(10, 25)  # volume per atom, A^3
        if kind == 0:
            crystals.append(fcc_primitive(z, (4 * volume) ** (1 / 3), sid=f"fcc-{k}"))
        elif kind == 1:
            crystals.append(bcc_primitive(z, (2 * volume) ** (1 / 3), sid=f"bcc-{k}"))
        else:
            crystals.append(simple_cubic(z, volume ** (1 / 3), sid=f"sc-{k}"))
        labels.append(kind)
    data, _ = CrystalDataset.from_structures(
        crystals, labels, ids=[c.id for c in crystals], task="classification", classes=["fcc", "bcc", "sc"]
    )
    result = Trainer(
        data,
        tmp_path,
        SMALL_MODEL,
        {"epochs": 60, "batch_size": 8, "lr": 5e-3, "train_ratio": 1.0, "val_ratio": 0.0, "test_ratio": 0.0},
        workers=1,
    ).fit()
    assert result.metrics["train"]["accuracy"] >= 0.95
    predictor = Predictor.from_checkpoint(result.best_checkpoint)
    assert predictor.task == "classification" and predictor.classes == ["fcc", "bcc", "sc"]
    prediction = predictor.predict(data)
    assert prediction.values.shape == (60, 3)
    np.testing.assert_allclose(prediction.values.sum(axis=1), 1.0, rtol=1e-6)
    assert np.mean(prediction.labels == np.array(labels)) >= 0.95


def test_overfits_a_small_real_dataset(tmp_path, perovskite_file):
    from aiida_cgcnn.training.public_data import read_castelli_perovskites

    data, _ = read_castelli_perovskites(perovskite_file, limit=40)
    assert len(data) == 40
    result = Trainer(
        data,
        tmp_path,
        SMALL_MODEL,
        {"epochs": 80, "batch_size": 8, "lr": 5e-3, "train_ratio": 1.0, "val_ratio": 0.0, "test_ratio": 0.0},
        workers=1,
    ).fit()
    train = result.metrics["train"]
    mad = np.mean(np.abs(data.targets - data.targets.mean()))
    assert train["mad"] == pytest.approx(mad)
    assert train["mae"] < 0.2 * mad, train


@pytest.mark.parametrize("pooling", ["sum", "site"])
def test_per_site_pooling_trains(tmp_path, dataset, pooling):
    result = Trainer(
        dataset, tmp_path, {**SMALL_MODEL, "pooling": pooling}, {"epochs": 20, "batch_size": 4}, workers=1
    ).fit()
    history = load_checkpoint(result.last_checkpoint)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    prediction = Predictor.from_checkpoint(result.best_checkpoint).predict(dataset)
    reduce = np.sum if pooling == "sum" else np.mean
    for value, sites in zip(prediction.values, prediction.site_values, strict=True):
        np.testing.assert_allclose(reduce(sites, axis=0), value, rtol=1e-5, atol=1e-6)


def test_two_targets_in_different_units_get_their_own_metrics(dataset, tmp_path):
    """U in kJ/mol and a target a thousand times smaller: the averaged metrics would hide the small
    one, so each target has its own, and the best epoch is chosen on the unit-free MAE/MAD."""
    crystals = list(dataset.crystals())
    energy = dataset.targets[:, 0]
    targets = np.stack([energy * 1000.0, energy], axis=1)
    two = type(dataset).from_crystals(crystals, targets, ["U", "small"], ["kJ/mol", "eV"])
    result = Trainer(two, tmp_path, model_config=SMALL_MODEL, train_config=QUICK, progress=False).fit()
    for part in ("train", "val", "test"):
        combined = result.metrics[part]
        metrics = combined["per_target"]
        assert set(metrics) == {"U", "small"}
        assert combined["mae"] == pytest.approx((metrics["U"]["mae"] + metrics["small"]["mae"]) / 2)
        assert metrics["U"]["mad"] == pytest.approx(1000 * metrics["small"]["mad"])
    history = load_checkpoint(result.best_checkpoint)["history"]
    best = min(history, key=lambda r: r["val_mae_over_mad"])
    assert result.metrics["best_epoch"] == best["epoch"]


@pytest.mark.parametrize("per_atom", [False, True])
def test_sum_pooling_loss_compares_per_cell_or_per_atom_values(tmp_path, per_atom):
    """Cells of 1 and 8 atoms in one batch: the default loss weighs each cell's error divided by the
    batch's mean atom count, the per-atom loss divides each error by its own cell's atom count."""
    from ase.build import bulk

    from aiida_cgcnn.training.dataset import CrystalDataset

    cells = [bulk("Cu", "fcc", a=3.6), bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2))]
    dataset, _ = CrystalDataset.from_structures(cells, [[1.0], [2.0]], target_names=["e"], units=["eV"])
    config = {"epochs": 1, "loss_per_atom": per_atom, "train_ratio": 1.0, "val_ratio": 0.0, "test_ratio": 0.0}
    trainer = Trainer(dataset, tmp_path, {**SMALL_MODEL, "pooling": "sum"}, config, progress=False)
    model = trainer._build_model(np.arange(2))
    batch = trainer.prepared.graphs.batch(np.arange(2), trainer.prepared.dataset.targets, None)
    output = model(batch)
    loss = trainer._loss(model, output, batch)
    error = (output.prediction - batch.targets).detach()[:, 0] / model.head.target_std[0]
    atoms = torch.tensor([1.0, 8.0])
    expected = (error / atoms) ** 2 if per_atom else (error / atoms.mean()) ** 2
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)
