"""Validation of the ``parameters`` input of the training CalcJob, from the core settings' own schema:
the fields and types of :class:`TrainConfig` and :class:`GraphSettings`, the architectures' defaults,
the atom properties of Table II and the descriptor names."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ..graph.crystal_graph import GraphSettings
from ..graph.features import ATOM_PROPERTIES
from ..models.registry import ARCHITECTURES, model_defaults
from ..training.trainer import TrainConfig

__all__ = ["PARAMETERS_HELP", "SECTIONS", "validate_train_parameters"]

SECTIONS = ("model", "train", "graph", "skip_invalid", "atom_properties", "descriptors", "nproc_per_node")

PARAMETERS_HELP = (
    "Sections: `model` (`architecture`: cgcnn or alignn, and its hyperparameters), `train` (TrainConfig "
    "fields: epochs, batch_size, lr, ...), `graph` (GraphSettings fields: radius, max_neighbors, ...), "
    "`atom_properties` (atom features: names of Table II, all nine by default), `descriptors` (de-CGCNN: "
    "all, local, global or comma-separated names), `nproc_per_node` (data-parallel processes on the node) "
    "and the flag `skip_invalid`. Validated at submission; an error names the bad key."
)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a dataclass field's type (an int is a valid float, a bool no number)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_args(hint):  # list[int], int | None
        return str(hint).replace("typing.", "")
    return str(getattr(hint, "__name__", hint))


def _check_fields(section: str, values: Any, settings: type) -> str | None:
    """Unknown keys and wrongly typed values of a section that holds a settings dataclass."""
    if not isinstance(values, dict):
        return (
            f"parameters.{section}: a dictionary of {settings.__name__} fields, not {type(values).__name__}"
        )
    hints = typing.get_type_hints(settings)
    fields = [f.name for f in dataclasses.fields(settings)]
    for key, value in values.items():
        if key not in fields:
            return f"parameters.{section}.{key}: unknown key; valid keys are {sorted(fields)}"
        if not _matches(value, hints[key]):
            return f"parameters.{section}.{key}: {value!r} is not of type {_type_name(hints[key])}"
    return None


_SPLIT = ("train_ratio", "val_ratio", "test_ratio")


def _check_train(train: dict[str, Any]) -> str | None:
    """TrainConfig's own checks: each key alone, so that the error names it; then the split ratios,
    which are checked together."""
    for key, value in train.items():
        if key in _SPLIT:
            continue
        try:
            TrainConfig(**{key: value}).validate()
        except ValueError as error:
            return f"parameters.train.{key}: {error}"
    try:
        TrainConfig(**train).validate()
    except ValueError as error:
        given = ", ".join(f"{key}={train[key]}" for key in _SPLIT if key in train)
        return f"parameters.train: {error} ({given or 'defaults 0.6, 0.2, 0.2'})"
    return None


def _check_model(model: Any) -> str | None:
    if not isinstance(model, dict):
        return f"parameters.model: a dictionary of hyperparameters, not {type(model).__name__}"
    architecture = model.get("architecture", "cgcnn")
    if architecture not in ARCHITECTURES:
        return f"parameters.model.architecture: {architecture!r} is not one of {sorted(ARCHITECTURES)}"
    defaults = model_defaults(architecture)
    for key, value in model.items():
        if key == "architecture":
            continue
        if key not in defaults:
            valid = sorted({*defaults, "architecture"})
            return f"parameters.model.{key}: unknown key for {architecture}; valid keys are {valid}"
        expected = type(defaults[key])
        if not _matches(value, expected):
            return f"parameters.model.{key}: {value!r} is not of type {expected.__name__}"
    return None


def _check_atom_properties(names: Any) -> str | None:
    known = [p.name for p in ATOM_PROPERTIES]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return f"parameters.atom_properties: a non-empty list of names from {known}"
    unknown = [n for n in names if n not in known]
    if unknown:
        return f"parameters.atom_properties: unknown {unknown}; choose from {known}"
    if len(set(names)) != len(names):
        return "parameters.atom_properties: a name is given twice"
    return None


def _check_descriptors(spec: Any) -> str | None:
    if not isinstance(spec, str):
        return "parameters.descriptors: a string: all, local, global, none or comma-separated names"
    if spec.strip().lower() == "none":
        return None
    from ..descriptors.definitions import resolve_names

    try:
        resolve_names(spec)
    except ValueError as error:
        return f"parameters.descriptors: {error}"
    return None


def validate_train_parameters(parameters: dict[str, Any]) -> str | None:
    """An error message naming the bad key, or None when ``parameters`` is valid (:data:`PARAMETERS_HELP`)."""
    unknown = set(parameters) - set(SECTIONS)
    if unknown:
        return f"parameters: unknown key(s) {sorted(unknown)}; valid keys are {list(SECTIONS)}"
    checks = [
        lambda: _check_model(parameters["model"]) if "model" in parameters else None,
        lambda: (
            _check_fields("train", parameters.get("train", {}), TrainConfig)
            or _check_train(dict(parameters.get("train", {})))
        ),
        lambda: _check_fields("graph", parameters.get("graph", {}), GraphSettings),
        lambda: (
            _check_atom_properties(parameters["atom_properties"]) if "atom_properties" in parameters else None
        ),
        lambda: _check_descriptors(parameters["descriptors"]) if "descriptors" in parameters else None,
    ]
    for check in checks:
        error = check()
        if error:
            return error
    nproc = parameters.get("nproc_per_node", 1)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        return "parameters.nproc_per_node: must be a positive integer (processes, i.e. GPUs, per node)"
    if "skip_invalid" in parameters and not isinstance(parameters["skip_invalid"], bool):
        return "parameters.skip_invalid: must be true or false"
    return None
