"""Validation of the ``parameters`` input of the training CalcJob, against the core's own settings."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..graph.crystal_graph import GraphSettings
from ..models.registry import ARCHITECTURES, model_defaults
from ..training.trainer import TrainConfig

__all__ = ["SECTIONS", "validate_train_parameters"]

SECTIONS = ("model", "train", "graph", "skip_invalid", "atom_properties", "nproc_per_node", "descriptors")
_MODEL_EXTRA = {"architecture"}


def validate_train_parameters(parameters: dict[str, Any]) -> str | None:
    """An error message naming the bad key, or None when ``parameters`` is valid.

    ``parameters`` has the sections ``model`` (architecture and hyperparameters), ``train``
    (:class:`~aiida_cgcnn.training.trainer.TrainConfig` fields), ``graph``
    (:class:`~aiida_cgcnn.graph.crystal_graph.GraphSettings` fields), the flag ``skip_invalid``,
    ``descriptors`` (de-CGCNN: all, local, global or names) and ``nproc_per_node`` (data-parallel
    processes on the node, under torchrun).
    """
    unknown = set(parameters) - set(SECTIONS)
    if unknown:
        return f"parameters: unknown key(s) {sorted(unknown)}; valid keys are {list(SECTIONS)}"
    model = dict(parameters.get("model", {}))
    architecture = model.get("architecture", "cgcnn")
    if architecture not in ARCHITECTURES:
        return f"parameters.model.architecture: {architecture!r} is not one of {sorted(ARCHITECTURES)}"
    allowed = set(model_defaults(architecture)) | _MODEL_EXTRA
    for key in model:
        if key not in allowed:
            return f"parameters.model.{key}: unknown key for {architecture}; valid keys are {sorted(allowed)}"
    train = dict(parameters.get("train", {}))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in train:
        if key not in fields:
            return f"parameters.train.{key}: unknown key; valid keys are {sorted(fields)}"
    try:
        TrainConfig(**train).validate()
    except (TypeError, ValueError) as error:
        key = str(error).split()[0]
        return f"parameters.train.{key}: {error}"
    graph = dict(parameters.get("graph", {}))
    graph_fields = {f.name for f in dataclasses.fields(GraphSettings)}
    for key in graph:
        if key not in graph_fields:
            return f"parameters.graph.{key}: unknown key; valid keys are {sorted(graph_fields)}"
    if "descriptors" in parameters:
        spec = parameters["descriptors"]
        if not isinstance(spec, str):
            return "parameters.descriptors: a string: all, local, global, none or comma-separated names"
        if spec.strip().lower() != "none":
            from ..descriptors.definitions import resolve_names

            try:
                resolve_names(spec)
            except ValueError as error:
                return f"parameters.descriptors: {error}"
    nproc = parameters.get("nproc_per_node", 1)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        return "parameters.nproc_per_node: must be a positive integer (processes, i.e. GPUs, per node)"
    if "skip_invalid" in parameters and not isinstance(parameters["skip_invalid"], bool):
        return "parameters.skip_invalid: must be true or false"
    return None
