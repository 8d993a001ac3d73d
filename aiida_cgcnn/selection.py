"""Turning predictions into decisions: screening criteria and batch selection for active learning.

Pure NumPy, no AiiDA: the screening and active-learning work chains and the benchmarks share it.

:class:`Criterion`
    What a screen keeps: one target, a direction (``max``/``min``), optional bounds, a maximum
    ensemble spread and a top-k; optionally per atom (a sum-pooled property of cells of different
    sizes is compared per atom).
:func:`select_batch`
    Which pool structures get a reference calculation next: ``uncertainty`` (largest ensemble
    spread), ``random``, or ``diverse`` (spread-weighted farthest-point sampling, so that a batch
    does not spend its budget on near-copies of one uncertain crystal).
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

__all__ = ["STRATEGIES", "Criterion", "composition_features", "mae_over_mad", "select_batch"]

STRATEGIES = ("uncertainty", "random", "diverse")
# the diverse strategy looks at the most uncertain candidates only: farthest-point sampling is
# quadratic in the candidates it compares
DIVERSE_CANDIDATES = 4096
MAX_Z = 103


@dataclasses.dataclass(frozen=True)
class Criterion:
    """A screen: keep the structures whose ``target`` lies within [``minimum``, ``maximum``] and whose
    spread is at most ``max_std``, best first by ``direction``, at most ``top_k`` of them."""

    target: str
    direction: t.Literal["max", "min"] = "max"
    minimum: float | None = None
    maximum: float | None = None
    max_std: float | None = None
    top_k: int | None = None
    per_atom: bool = False

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("a criterion needs a target: the name of a predicted property")
        if self.direction not in ("max", "min"):
            raise ValueError(f"criterion direction {self.direction!r}: use 'max' or 'min'")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"criterion top_k {self.top_k}: a positive number of structures, or none")
        if self.max_std is not None and self.max_std < 0:
            raise ValueError(f"criterion max_std {self.max_std}: a spread is not negative")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"criterion bounds [{self.minimum}, {self.maximum}] are empty")

    @classmethod
    def from_dict(cls, values: dict[str, t.Any]) -> Criterion:
        """From a dictionary (a work chain's ``Dict`` input); unknown keys are an error that lists
        the known ones."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown criterion key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "target" not in values:
            raise ValueError("a criterion needs a target: the name of a predicted property")
        return cls(**values)

    def to_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)

    def score(self, values: np.ndarray, atoms: np.ndarray | None = None) -> np.ndarray:
        """The values the criterion compares: per atom when asked (``atoms``: atoms per structure)."""
        values = np.asarray(values, dtype=float)
        if not self.per_atom:
            return values
        if atoms is None:
            raise ValueError("a per-atom criterion needs the number of atoms of every structure")
        return values / np.asarray(atoms, dtype=float)

    def select(
        self, values: np.ndarray, std: np.ndarray | None = None, atoms: np.ndarray | None = None
    ) -> np.ndarray:
        """Indices of the kept structures, best first (ties by input order). NaN values (structures
        that were not predicted) are never kept; without ``std`` the spread bound is not applied."""
        score = self.score(values, atoms)
        keep = np.isfinite(score)
        if self.minimum is not None:
            keep &= score >= self.minimum
        if self.maximum is not None:
            keep &= score <= self.maximum
        if self.max_std is not None and std is not None:
            spread = self.score(std, atoms)
            keep &= np.isfinite(spread) & (spread <= self.max_std)
        index = np.flatnonzero(keep)
        key = -score[index] if self.direction == "max" else score[index]
        ranked = index[np.argsort(key, kind="stable")]
        return ranked if self.top_k is None else ranked[: self.top_k]


def select_batch(
    strategy: str,
    k: int,
    std: np.ndarray,
    *,
    seed: int = 0,
    features: np.ndarray | None = None,
    exclude: t.Iterable[int] = (),
) -> np.ndarray:
    """``k`` pool indices for the next reference calculations, never one in ``exclude`` (already
    computed) nor one without a finite spread.

    ``uncertainty``: the largest ``std`` first. ``random``: uniformly, reproducible by ``seed``.
    ``diverse``: among the most uncertain candidates, greedy farthest-point sampling in standardised
    ``features`` (one row per pool structure) with each distance weighted by the candidate's spread:
    it starts from the most uncertain structure and then takes the one that is both uncertain and far
    from everything already chosen.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"selection strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if k < 0:
        raise ValueError(f"batch size {k}: not negative")
    std = np.asarray(std, dtype=float)
    available = np.isfinite(std)
    excluded = np.fromiter(exclude, dtype=int)
    available[excluded[(excluded >= 0) & (excluded < len(std))]] = False
    candidates = np.flatnonzero(available)
    k = min(k, len(candidates))
    if k == 0:
        return np.zeros(0, dtype=int)
    if strategy == "random":
        return np.sort(np.random.default_rng(seed).choice(candidates, size=k, replace=False))
    by_spread = candidates[np.argsort(-std[candidates], kind="stable")]
    if strategy == "uncertainty":
        return by_spread[:k]
    if features is None:
        raise ValueError("the diverse strategy needs features: one row per pool structure")
    features = np.asarray(features, dtype=float)
    if len(features) != len(std):
        raise ValueError(f"{len(features)} feature rows for a pool of {len(std)} structures")
    pool = by_spread[: max(DIVERSE_CANDIDATES, k)]
    x = features[pool]
    scale = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    weight = std[pool] / max(float(std[pool].max()), np.finfo(float).tiny)
    chosen = [0]
    distance = np.linalg.norm(x - x[0], axis=1)
    for _ in range(k - 1):
        gain = weight * distance
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        distance = np.minimum(distance, np.linalg.norm(x - x[best], axis=1))
    return pool[np.asarray(chosen)]


def composition_features(numbers: t.Sequence[np.ndarray], volumes: np.ndarray) -> np.ndarray:
    """Cheap features for the diverse strategy: the element fractions (Z = 1..103), the volume per
    atom and log(atoms per cell) of every structure (``numbers``: atomic numbers per structure,
    ``volumes``: cell volumes in Å³)."""
    rows = np.zeros((len(numbers), MAX_Z + 2))
    for row, z in zip(rows, numbers, strict=True):
        z = np.asarray(z, dtype=int)
        if len(z) == 0 or z.min() < 1 or z.max() > MAX_Z:
            raise ValueError(f"atomic numbers {sorted(set(z.tolist()))} outside 1..{MAX_Z}")
        row[:MAX_Z] = np.bincount(z - 1, minlength=MAX_Z)[:MAX_Z] / len(z)
        row[MAX_Z + 1] = np.log(len(z))
    rows[:, MAX_Z] = np.asarray(volumes, dtype=float) / np.array([len(z) for z in numbers])
    return rows


def mae_over_mad(prediction: np.ndarray, reference: np.ndarray) -> float:
    """MAE divided by the mean absolute deviation of the reference from its mean: 1 is no better
    than predicting the mean, whatever the unit and spread of the property."""
    prediction = np.asarray(prediction, dtype=float)
    reference = np.asarray(reference, dtype=float)
    mad = float(np.mean(np.abs(reference - reference.mean())))
    if mad == 0:
        raise ValueError("the reference values do not vary: MAE/MAD is undefined")
    return float(np.mean(np.abs(prediction - reference))) / mad
