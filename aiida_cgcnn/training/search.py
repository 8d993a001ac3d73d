"""Hyperparameter search with Optuna, ask and tell, in rungs of epochs.

The whole state of a search is :attr:`SearchStudy.records`, a list of plain dicts (JSON, or a work
chain's context): the Optuna study is rebuilt from them for every decision, with the sampler seeded by
the search's seed and the trial's number, so a search reloaded from its records (a daemon restart, a
resumed command) asks and prunes exactly as one that never stopped.

Successive halving (Optuna's asynchronous ``SuccessiveHalvingPruner``): a trial trains up to the first
rung's epochs and reports its validation score there; a trial the pruner keeps continues from its
checkpoint to the next rung, instead of training again. The last rung is the full number of epochs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError

__all__ = [
    "MAXIMIZE",
    "Rungs",
    "SearchStudy",
    "check_split",
    "hold_out_test",
    "load_space",
    "nested",
    "search_train_settings",
    "space_names",
    "trial_parameters",
]

SPACES_FILE = Path(__file__).with_name("search_spaces.yaml")
#: Validation metrics where larger is better; the others (mae, rmse, loss) are minimised.
MAXIMIZE = ("accuracy", "roc_auc", "r2")
SAMPLERS = ("tpe", "random")
PRUNERS = ("asha", "median", "none")
_SECTIONS = ("model", "train")
_TYPES = ("int", "float", "categorical")


def space_names() -> list[str]:
    return sorted(yaml.safe_load(SPACES_FILE.read_text())["spaces"])


def load_space(space: str | dict[str, Any] | Path) -> dict[str, dict[str, Any]]:
    """The parameters of a named space of ``search_spaces.yaml``, of a YAML/JSON file of the same
    form (``{parameters: {...}}``), or of such a mapping; checked, in order."""
    if isinstance(space, Path) or (isinstance(space, str) and space.endswith((".yaml", ".yml", ".json"))):
        path = Path(space)
        if not path.is_file():
            raise ConfigError(f"search space file {str(path)!r} does not exist")
        space = yaml.safe_load(path.read_text())
        if not isinstance(space, dict):
            raise ConfigError(f"{path} must hold a mapping with a `parameters` section")
    if isinstance(space, str):
        spaces = yaml.safe_load(SPACES_FILE.read_text())["spaces"]
        if space not in spaces:
            raise ConfigError(f"unknown search space {space!r}; choose from {sorted(spaces)} or give a file")
        space = spaces[space]
    parameters = space.get("parameters", space) if isinstance(space, dict) else None
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError("a search space needs a non-empty `parameters` mapping")
    parameters = _flatten(copy.deepcopy(parameters))
    for name, spec in parameters.items():
        _check_parameter(name, spec, list(parameters)[: list(parameters).index(name)])
    return copy.deepcopy(parameters)


def _flatten(parameters: dict[str, Any]) -> dict[str, Any]:
    """``{model: {n_conv: spec}}`` (as an AiiDA Dict must hold it: no dots in keys) to
    ``{model.n_conv: spec}``, ``when`` conditions too; the flat form passes unchanged."""

    def flat(mapping: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in mapping.items():
            if name in _SECTIONS and isinstance(value, dict) and "type" not in value:
                out.update({f"{name}.{k}": v for k, v in value.items()})
            else:
                out[name] = value
        return out

    result = flat(parameters)
    for spec in result.values():
        if isinstance(spec, dict) and isinstance(spec.get("when"), dict):
            spec["when"] = flat(spec["when"])
    return result


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{model.n_conv: 2}`` to ``{model: {n_conv: 2}}``: parameters as an AiiDA Dict can hold them."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        section, _, key = name.partition(".")
        if key:
            out.setdefault(section, {})[key] = value
        else:
            out[name] = value
    return out


def _check_parameter(name: str, spec: Any, earlier: list[str]) -> None:
    section = name.split(".", 1)[0]
    if name != "descriptors" and (section not in _SECTIONS or "." not in name):
        raise ConfigError(f"search parameter {name!r}: name it model.NAME, train.NAME or descriptors")
    if not isinstance(spec, dict) or spec.get("type") not in _TYPES:
        raise ConfigError(f"search parameter {name!r}: `type` must be one of {list(_TYPES)}")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise ConfigError(f"search parameter {name!r}: a categorical one needs a list of `choices`")
    elif not (
        isinstance(spec.get("low"), int | float)
        and isinstance(spec.get("high"), int | float)
        and spec["low"] <= spec["high"]
    ):
        raise ConfigError(f"search parameter {name!r}: needs numbers `low` <= `high`")
    elif spec.get("log") and spec["low"] <= 0:
        raise ConfigError(f"search parameter {name!r}: a log range must start above 0")
    for other in spec.get("when", {}) or {}:
        if other not in earlier:
            raise ConfigError(f"search parameter {name!r}: `when` names {other!r}, which must come before it")


def _distribution(spec: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if spec["type"] == "categorical":
        return CategoricalDistribution(spec["choices"])
    if spec["type"] == "int":
        return IntDistribution(int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
    return FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))


def trial_parameters(params: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A training's parameters (``model``, ``train``, ``descriptors``, as a ``--config`` file or a
    ``cgcnn.train`` Dict holds them): ``base`` with the trial's sampled values in their sections."""
    result: dict[str, Any] = copy.deepcopy(base or {})
    for name, value in params.items():
        if name == "descriptors":  # "none" drops the features a dataset may store
            result["descriptors"] = value
            continue
        section, key = name.split(".", 1)
        result.setdefault(section, {})[key] = value
    return result


@dataclass(frozen=True)
class Rungs:
    """Epochs at which trials report and the pruner decides: ``min_epochs·η^k`` below
    ``max_epochs``, then ``max_epochs``."""

    min_epochs: int
    max_epochs: int
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ConfigError(
                f"rungs: need 1 <= min_epochs <= max_epochs, not {self.min_epochs} and {self.max_epochs}"
            )
        if self.reduction_factor < 2:
            raise ConfigError(f"rungs: the reduction factor must be >= 2, not {self.reduction_factor}")

    @property
    def epochs(self) -> list[int]:
        steps, k = [], 0
        while (e := self.min_epochs * self.reduction_factor**k) < self.max_epochs:
            steps.append(e)
            k += 1
        return [*steps, self.max_epochs]

    def after(self, done: int) -> int:
        """The epochs of the next rung for a trial that has trained ``done`` epochs."""
        return next(e for e in self.epochs if e > done)


class SearchStudy:
    """The trials of one search and the decisions on them.

    Each record: ``number``, ``params`` (sampled values), ``state`` (``running``, ``complete``,
    ``pruned`` or ``failed``), ``scores`` (epochs → validation score at each rung reached), ``value``,
    ``epochs`` (trained so far), ``system_attrs`` (what the pruner keeps of each rung), and whatever
    the caller adds (the calculations' pks, the run directory, a failure's reason).
    """

    def __init__(
        self,
        space: str | dict[str, Any] | Path,
        rungs: Rungs,
        metric: str = "mae",
        sampler: str = "tpe",
        pruner: str = "asha",
        seed: int = 0,
        records: list[dict[str, Any]] | None = None,
        n_startup_trials: int = 5,
    ):
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose from {list(SAMPLERS)}")
        if pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {pruner!r}; choose from {list(PRUNERS)}")
        self.space = load_space(space)
        self.rungs = rungs
        self.metric = metric
        self.direction: Literal["minimize", "maximize"] = "maximize" if metric in MAXIMIZE else "minimize"
        self.sampler_name = sampler
        self.pruner_name = pruner
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.records: list[dict[str, Any]] = copy.deepcopy(records or [])

    # --- state ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything the search needs to go on; :meth:`from_dict` rebuilds it."""
        return {
            "space": self.space,
            "rungs": [self.rungs.min_epochs, self.rungs.max_epochs, self.rungs.reduction_factor],
            "metric": self.metric,
            "sampler": self.sampler_name,
            "pruner": self.pruner_name,
            "seed": self.seed,
            "n_startup_trials": self.n_startup_trials,
            "records": copy.deepcopy(self.records),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchStudy:
        return cls(
            {"parameters": data["space"]},
            Rungs(*data["rungs"]),
            metric=data["metric"],
            sampler=data["sampler"],
            pruner=data["pruner"],
            seed=data["seed"],
            records=data["records"],
            n_startup_trials=data.get("n_startup_trials", 5),
        )

    def record(self, number: int) -> dict[str, Any]:
        return self.records[number]

    def count(self, *states: str) -> int:
        return sum(r["state"] in states for r in self.records)

    # --- Optuna ---------------------------------------------------------------------------------

    def _optuna(self, number: int):
        """The Optuna study holding every record, its sampler seeded for trial ``number``."""
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.sampler_name == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=self.seed + number, n_startup_trials=self.n_startup_trials
            )
        else:
            sampler = optuna.samplers.RandomSampler(seed=self.seed + number)
        if self.pruner_name == "asha":
            pruner: optuna.pruners.BasePruner = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.rungs.min_epochs, reduction_factor=self.rungs.reduction_factor
            )
        elif self.pruner_name == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=0)
        else:
            pruner = optuna.pruners.NopPruner()
        study = optuna.create_study(direction=self.direction, sampler=sampler, pruner=pruner)
        states = {
            "running": TrialState.RUNNING,
            "complete": TrialState.COMPLETE,
            "pruned": TrialState.PRUNED,
            "failed": TrialState.FAIL,
        }
        for record in self.records:
            study.add_trial(
                create_trial(
                    state=states[record["state"]],
                    params=record["params"],
                    distributions={k: _distribution(self.space[k]) for k in record["params"]},
                    value=record["value"] if record["state"] == "complete" else None,
                    intermediate_values={int(k): float(v) for k, v in record["scores"].items()},
                    system_attrs=record.get("system_attrs", {}),
                )
            )
        return study

    def ask(self) -> dict[str, Any]:
        """A new trial's record (state ``running``, no epochs yet), its parameters sampled."""
        number = len(self.records)
        study = self._optuna(number)
        trial = study.ask()
        params: dict[str, Any] = {}
        for name, spec in self.space.items():
            when = spec.get("when") or {}
            if all(params.get(k) == v for k, v in when.items()):
                params[name] = _suggest(trial, name, spec)
        record = {
            "number": number,
            "params": params,
            "state": "running",
            "scores": {},
            "value": None,
            "epochs": 0,
            "system_attrs": {},
        }
        self.records.append(record)
        return record

    def tell(self, number: int, epochs: int, score: float) -> str:
        """Record a trial's validation ``score`` after ``epochs``; what it does next: ``continue`` to the
        next rung, ``pruned`` or ``complete`` (the last rung reached)."""
        record = self.records[number]
        if record["state"] != "running":
            raise ValueError(f"trial {number} is {record['state']}, not running")
        if not math.isfinite(score):
            return self.fail(number, f"validation {self.metric} is {score}")
        record["epochs"] = epochs
        record["scores"][str(epochs)] = float(score)
        if epochs >= self.rungs.max_epochs:
            record["state"], record["value"] = "complete", float(score)
            return "complete"
        study = self._optuna(number)
        frozen = study.trials[number]
        if study.pruner.prune(study, frozen):
            record["state"], record["value"] = "pruned", float(score)
        record["system_attrs"] = dict(study.trials[number].system_attrs)
        return "pruned" if record["state"] == "pruned" else "continue"

    def fail(self, number: int, reason: str) -> str:
        record = self.records[number]
        record["state"], record["reason"] = "failed", reason
        return "failed"

    # --- results --------------------------------------------------------------------------------

    def best(self) -> dict[str, Any] | None:
        """The complete trial with the best value (the lowest number among equals)."""
        done = [r for r in self.records if r["state"] == "complete"]
        if not done:
            return None
        sign = -1 if self.direction == "maximize" else 1
        return min(done, key=lambda r: (sign * r["value"], r["number"]))

    def importances(self) -> dict[str, float]:
        """Optuna's fANOVA importance of each parameter over the complete trials (empty with fewer than
        two, or when every parameter was the same)."""
        import optuna

        study = self._optuna(len(self.records))
        if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) < 2:
            return {}
        try:
            return {
                k: float(v)
                for k, v in optuna.importance.get_param_importances(
                    study, evaluator=_evaluator(self.seed)
                ).items()
            }
        except (RuntimeError, ValueError):  # every complete trial with one value of every parameter
            return {}

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial: number, parameters, epochs, score, state (and the caller's fields)."""
        names = list(self.space)
        rows = []
        for r in self.records:
            row = {"trial": r["number"], **{n: r["params"].get(n, "") for n in names}}
            score = r["value"] if r["value"] is not None else (list(r["scores"].values()) or [None])[-1]
            row.update(
                {
                    "epochs": r["epochs"],
                    f"val_{self.metric}": score,
                    "state": r["state"],
                    **{k: v for k, v in r.items() if k in ("pks", "reason", "directory")},
                }
            )
            rows.append(row)
        return rows


def _suggest(trial, name: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
    return trial.suggest_float(
        name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False))
    )


def _evaluator(seed: int):
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=seed)


def hold_out_test(dataset: Any, split: tuple[float, float, float], seed: int) -> tuple[Any, Any]:
    """The search part (train and validation) and the held-out test part of a dataset: the seed's
    random split, as a training run would make it. Trials only ever see the search part."""
    import numpy as np

    from .trainer import split_indices

    check_split(split)
    parts = split_indices(len(dataset), *split, seed=seed)
    search = np.sort(np.concatenate([parts["train"], parts["val"]]))
    return dataset.subset(search), dataset.subset(np.sort(parts["test"]))


def check_split(split: tuple[float, float, float] | list[float]) -> None:
    if len(split) != 3 or min(split) < 0 or split[0] <= 0 or split[1] <= 0 or sum(split) > 1 + 1e-9:
        raise ConfigError(
            f"split {list(split)}: give train, validation and test ratios, the first two positive, "
            "summing to at most 1"
        )


def search_train_settings(split: tuple[float, float, float]) -> dict[str, float]:
    """The trials' split of the search part: train and validation in the whole split's proportions,
    no test part."""
    share = split[0] + split[1]
    return {"train_ratio": split[0] / share, "val_ratio": split[1] / share, "test_ratio": 0.0}
