"""The pure active-learning loop (aiida_cgcnn.active_learning): real training of a small ensemble."""

import numpy as np
import pytest

from aiida_cgcnn.active_learning import run_active_learning, validation_errors
from aiida_cgcnn.predict import Predictor
from aiida_cgcnn.selection import select_batch
from aiida_cgcnn.training.dataset import CrystalDataset
from tests.builders import SMALL_MODEL, bcc_primitive, fcc_primitive, rocksalt_primitive, supercell

TRAIN = {"epochs": 2, "batch_size": 8, "loss": "l1", "loss_per_atom": True}


def _crystals(n: int) -> list:
    """Small cells of 1 to 8 atoms, varied elements and lattice constants."""
    rng = np.random.default_rng(0)
    makers = [
        lambda a, k: fcc_primitive(29, a, f"fcc-{k}"),
        lambda a, k: bcc_primitive(26, a - 0.7, f"bcc-{k}"),
        lambda a, k: rocksalt_primitive(11, 17, a + 1.9, f"rs-{k}"),
        lambda a, k: supercell(fcc_primitive(13, a + 0.4), (2, 2, 2), f"fcc8-{k}"),
    ]
    return [makers[k % 4](3.4 + 0.4 * rng.random(), k) for k in range(n)]


def _dataset(crystals, targets) -> CrystalDataset:
    return CrystalDataset.from_crystals(crystals, targets, ["Cv", "U"], ["J/(K mol)", "kJ/mol"])


def _table(crystals) -> np.ndarray:
    """An extensive 'reference': per cell, grows with the atoms and the lattice constant."""
    atoms = np.array([c.num_atoms for c in crystals], dtype=float)
    volume = np.array([abs(np.linalg.det(c.lattice)) / c.num_atoms for c in crystals])
    return np.stack([atoms * (20 + volume), atoms * (3 - 0.05 * volume)], axis=1)


@pytest.fixture(scope="module")
def problem():
    pool_crystals, val_crystals = _crystals(24), _crystals(36)[24:]
    table = _table(pool_crystals)
    # the pool's own targets are NaN: only the reference may give values
    pool = _dataset(pool_crystals, np.full_like(table, np.nan))
    validation = _dataset(val_crystals, _table(val_crystals))
    return pool, validation, table


def _run(problem, tmp_path, strategy, calls, **kwargs):
    pool, validation, table = problem

    def reference(index):
        calls.append([int(i) for i in index])
        return table[index]

    settings = dict(initial=6, batch=4, rounds=2, members=2, fine_tune_epochs=1, select_on="Cv")
    settings.update(kwargs)
    return run_active_learning(
        pool,
        validation,
        reference,
        tmp_path,
        strategy=strategy,
        seed=3,
        model_config={**SMALL_MODEL, "pooling": "sum"},
        train_config=TRAIN,
        **settings,
    )


def test_uncertainty_loop_asks_each_reference_once_and_selects_by_the_ensemble_spread(problem, tmp_path):
    pool, _, _ = problem
    calls: list[list[int]] = []
    result = _run(problem, tmp_path, "uncertainty", calls)
    asked = [i for call in calls for i in call]
    assert len(asked) == len(set(asked)) == 6 + 2 * 4  # never the same structure twice
    assert [len(c) for c in calls] == [6, 4, 4]
    assert [r.references for r in result.rounds] == [6, 10, 14]
    assert sorted(result.labelled.tolist()) == sorted(asked)
    assert result.rounds[-1].selected == []  # the last round trains and scores only
    # round 0's batch is the 4 largest Cv spreads of its own ensemble over the rest of the pool
    members = [Predictor.from_checkpoint(tmp_path / f"round-0/member-{m}/best.pt") for m in range(2)]
    std = np.stack([m.predict(pool).values[:, 0] for m in members]).std(axis=0)
    first = np.asarray(calls[0])
    expected = select_batch("uncertainty", 4, std, exclude=first)
    assert result.rounds[0].selected == expected.tolist()
    assert np.argmax(np.where(np.isin(np.arange(len(pool)), first), -1, std)) == expected[0]
    # later rounds are warm starts of fine_tune_epochs from the previous members
    history = Predictor.from_checkpoint(tmp_path / "round-1/member-0/best.pt").checkpoint["history"]
    assert len(history) == 1
    errors = result.rounds[-1].validation["Cv"]
    assert np.isfinite(errors["mae_over_mad"]) and errors["mae_over_mad_per_atom"] > 0


def test_strategies_share_the_seed_batch_and_goals_stop_the_loop(problem, tmp_path):
    uncertainty_calls: list[list[int]] = []
    random_calls: list[list[int]] = []
    _run(problem, tmp_path / "u", "uncertainty", uncertainty_calls, rounds=1)
    result = _run(
        problem,
        tmp_path / "r",
        "random",
        random_calls,
        rounds=3,
        goals={"Cv": 100.0, "Cv_per_atom": 1e-9},
        stop_at_goals=True,
    )
    assert uncertainty_calls[0] == random_calls[0]  # paired: same initial random batch
    assert uncertainty_calls[1] != random_calls[1]
    # a goal reached at once is recorded at the initial references; one never reached stays None,
    # so the loop runs its rounds
    assert result.reached == {"Cv": 6, "Cv_per_atom": None}
    assert len(result.rounds) == 4
    reached = _run(problem, tmp_path / "s", "random", [], rounds=3, goals={"Cv": 100.0}, stop_at_goals=True)
    assert len(reached.rounds) == 1 and reached.reached == {"Cv": 6}


def test_validation_errors_per_cell_and_per_atom():
    reference = np.array([[2.0], [4.0], [12.0]])
    mean = np.array([[3.0], [4.0], [12.0]])
    atoms = np.array([1, 2, 4])
    errors = validation_errors(mean, reference, atoms, ["Cv"])["Cv"]
    assert errors["mae"] == pytest.approx(1 / 3)
    assert errors["mae_over_mad"] == pytest.approx((1 / 3) / np.mean(np.abs(reference - 6)))
    assert errors["mae_per_atom"] == pytest.approx(1 / 3)
    per_atom = np.array([2.0, 2.0, 3.0])
    assert errors["mae_over_mad_per_atom"] == pytest.approx((1 / 3) / np.mean(np.abs(per_atom - 7 / 3)))
