"""The active-learning loop as a pure function: no AiiDA, files only under a work directory.

Each round trains a small ensemble on the structures whose reference is known, scores a fixed
validation set, predicts the rest of the pool and asks :func:`~aiida_cgcnn.selection.select_batch`
which structures get a reference calculation next. The ``cgcnn.active_learning`` work chain makes the
same choices with the same :func:`~aiida_cgcnn.selection.select_batch`; this function is what the
benchmark (``benchmarks/active_learning.py``) runs on real data with a table as the reference.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t
from pathlib import Path

import numpy as np

from .predict import Predictor
from .selection import select_batch
from .training.dataset import CrystalDataset
from .training.trainer import Trainer

__all__ = ["ActiveLearningResult", "Round", "run_active_learning", "validation_errors"]

# A reference: pool indices in, one row of target values per index out (in the pool's target order).
Reference = t.Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class Round:
    """One round: how many references the training set held, the validation errors of the ensemble
    trained on them, and the batch selected next (empty in the last round)."""

    round: int
    references: int
    validation: dict[str, dict[str, float]]
    selected: list[int]
    train_s: float
    predict_s: float


@dataclasses.dataclass
class ActiveLearningResult:
    strategy: str
    seed: int
    rounds: list[Round]
    labelled: np.ndarray  # pool indices with a reference, in the order they were computed
    reached: dict[str, int | None]  # target name -> references when first reached (None: never)

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "rounds": [dataclasses.asdict(r) for r in self.rounds],
            "labelled": [int(i) for i in self.labelled],
            "reached": dict(self.reached),
        }


def validation_errors(
    mean: np.ndarray, reference: np.ndarray, num_atoms: np.ndarray, target_names: t.Sequence[str]
) -> dict[str, dict[str, float]]:
    """MAE and MAE/MAD per target, per cell and per atom (values divided by the atoms of each cell)."""
    from .selection import mae_over_mad

    errors: dict[str, dict[str, float]] = {}
    per_atom = reference / num_atoms[:, None]
    predicted_per_atom = mean / num_atoms[:, None]
    for k, name in enumerate(target_names):
        errors[name] = {
            "mae": float(np.mean(np.abs(mean[:, k] - reference[:, k]))),
            "mae_over_mad": mae_over_mad(mean[:, k], reference[:, k]),
            "mae_per_atom": float(np.mean(np.abs(predicted_per_atom[:, k] - per_atom[:, k]))),
            "mae_over_mad_per_atom": mae_over_mad(predicted_per_atom[:, k], per_atom[:, k]),
        }
    return errors


def _mean_std(
    predictors: list[Predictor], dataset: CrystalDataset, cache: Path, workers: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The members' mean and spread (ddof=0, as :class:`~aiida_cgcnn.ensemble.Ensemble`) per cell, as
    given: no primitive-cell reduction or domain check, and the graphs built once for all members."""
    stack = np.stack([p.predict(dataset, cache_dir=cache, workers=workers).values for p in predictors])
    return stack.mean(axis=0), stack.std(axis=0)


def _train_members(
    train: CrystalDataset,
    round_dir: Path,
    members: int,
    seed: int,
    model_config: dict[str, t.Any],
    train_config: dict[str, t.Any],
    previous: list[Path] | None,
    workers: int | None,
) -> list[Path]:
    """One Trainer run per member on every labelled structure (no validation split: members differ by
    seed, the last epoch is kept); warm-started from the previous round's member when given."""
    paths = []
    for member in range(members):
        config = dict(train_config, seed=seed * 1000 + member, train_ratio=1.0, val_ratio=0.0, test_ratio=0.0)
        result = Trainer(
            train,
            round_dir / f"member-{member}",
            model_config=dict(model_config),
            train_config=config,
            device="cpu",
            progress=False,
            init_from=previous[member] if previous else None,
            workers=workers,
        ).fit()
        paths.append(result.best_checkpoint)
    return paths


def run_active_learning(
    pool: CrystalDataset,
    validation: CrystalDataset,
    reference: Reference,
    work_dir: str | Path,
    *,
    strategy: str,
    seed: int,
    initial: int,
    batch: int,
    rounds: int,
    members: int,
    model_config: dict[str, t.Any],
    train_config: dict[str, t.Any],
    fine_tune_epochs: int | None = None,
    select_on: str,
    features: np.ndarray | None = None,
    goals: dict[str, float] | None = None,
    stop_at_goals: bool = False,
    workers: int | None = 1,
    echo: t.Callable[[str], None] = lambda _: None,
) -> ActiveLearningResult:
    """Run ``rounds`` rounds of selection after a random seed batch of ``initial`` references.

    Parameters
    ----------
    pool
        Candidate structures; their targets are never read (``reference`` gives the values).
    validation
        Fixed structures with known targets, scored after every round.
    reference
        Pool indices -> target rows: the table, or any force engine behind a function.
    strategy, batch, features
        :func:`~aiida_cgcnn.selection.select_batch` settings; ``features`` for ``diverse``.
    select_on
        The target whose ensemble spread (per cell) steers the selection.
    train_config, fine_tune_epochs
        The members' training settings; with ``fine_tune_epochs`` the rounds after the first start
        from the previous round's members and train that many epochs (a warm start).
    goals, stop_at_goals
        ``"Cv"`` or ``"Cv_per_atom"`` -> validation MAE/MAD goal: the references needed to reach each
        are recorded, and with ``stop_at_goals`` the loop ends once all are reached.
    workers
        Processes building graphs (1: all in this process; None: one per core).
    """
    work_dir = Path(work_dir)
    rng = np.random.default_rng(seed)
    labelled = np.sort(rng.choice(len(pool), size=min(initial, len(pool)), replace=False))
    known = np.asarray(reference(labelled), dtype=float)
    column = list(pool.target_names).index(select_on)
    goals = dict(goals or {})
    reached: dict[str, int | None] = dict.fromkeys(goals)
    history: list[Round] = []
    previous: list[Path] | None = None
    for number in range(rounds + 1):
        start = time.monotonic()
        train = dataclasses.replace(pool.subset(labelled), targets=known)
        config = dict(train_config)
        if previous is not None and fine_tune_epochs is not None:
            config["epochs"] = fine_tune_epochs
        checkpoints = _train_members(
            train, work_dir / f"round-{number}", members, seed, model_config, config, previous, workers
        )
        if fine_tune_epochs is not None:
            previous = checkpoints
        trained = time.monotonic()
        predictors = [Predictor.from_checkpoint(p) for p in checkpoints]
        mean, _ = _mean_std(predictors, validation, work_dir / "graphs", workers)
        errors = validation_errors(mean, validation.targets, validation.num_atoms, pool.target_names)
        for name, goal in goals.items():
            target = name.removesuffix("_per_atom")
            key = "mae_over_mad_per_atom" if name.endswith("_per_atom") else "mae_over_mad"
            if reached[name] is None and errors[target][key] <= goal:
                reached[name] = len(labelled)
        done = number == rounds or (stop_at_goals and all(v is not None for v in reached.values()))
        selected = np.zeros(0, dtype=int)
        if not done:
            rest = np.setdiff1d(np.arange(len(pool)), labelled)
            std = np.full(len(pool), np.nan)
            if strategy != "random":  # random needs no prediction of the pool
                std[rest] = _mean_std(predictors, pool.subset(rest), work_dir / "graphs", workers)[1][
                    :, column
                ]
            else:
                std[rest] = 0.0
            selected = select_batch(
                strategy, batch, std, seed=seed * 1000 + number, features=features, exclude=labelled
            )
        history.append(
            Round(
                number,
                len(labelled),
                errors,
                [int(i) for i in selected],
                trained - start,
                time.monotonic() - trained,
            )
        )
        cv = errors[select_on]
        echo(
            f"{strategy} seed {seed} round {number}: {len(labelled)} references, {select_on} MAE/MAD "
            f"{cv['mae_over_mad']:.4f} per cell, {cv['mae_over_mad_per_atom']:.4f} per atom "
            f"(train {trained - start:.0f} s, predict {time.monotonic() - trained:.0f} s)"
        )
        if done:
            break
        labelled = np.concatenate([labelled, selected])
        known = np.concatenate([known, np.asarray(reference(selected), dtype=float)])
    return ActiveLearningResult(strategy, seed, history, labelled, reached)
