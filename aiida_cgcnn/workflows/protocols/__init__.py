"""Protocols: named recipes of inputs for a work chain, kept in a YAML file beside this module.

As in aiida-quantumespresso, a protocol file holds ``default_inputs`` (shared by all protocols),
``default_protocol`` and ``protocols`` (each with a ``description`` and the inputs it changes). A work
chain gets :meth:`ProtocolMixin.get_builder_from_protocol` by subclassing :class:`ProtocolMixin`.
Here a protocol also has ``models`` (the model section per architecture) and may name a ``preset``
of :mod:`aiida_cgcnn.training.presets`, whose numbers it takes instead of repeating them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from aiida import orm
from aiida.engine import ProcessBuilder

from ...errors import ConfigError

__all__ = ["ProtocolMixin", "recursive_merge"]

PROTOCOL_DIR = Path(__file__).parent


def recursive_merge(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """``left`` updated with ``right``: nested mappings are merged key by key, anything else replaced."""
    merged = dict(copy.deepcopy(left))
    for key, value in right.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class ProtocolMixin:
    """``get_builder_from_protocol`` and its helpers for a work chain that wraps ``TrainCalculation``."""

    #: The protocol file, in this package's protocols folder.
    _protocol_file: ClassVar[str] = "train.yaml"

    @classmethod
    def get_protocol_filepath(cls) -> Path:
        """The YAML file holding the protocols."""
        return PROTOCOL_DIR / cls._protocol_file

    @classmethod
    def _load_protocol_file(cls) -> dict[str, Any]:
        with open(cls.get_protocol_filepath()) as handle:
            content: dict[str, Any] = yaml.safe_load(handle)
        return content

    @classmethod
    def get_default_protocol(cls) -> str:
        """The protocol used when none is named."""
        return str(cls._load_protocol_file()["default_protocol"])

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict[str, str]]:
        """Every protocol's name and ``{"description": ...}``."""
        protocols = cls._load_protocol_file()["protocols"]
        return {name: {"description": " ".join(p["description"].split())} for name, p in protocols.items()}

    @classmethod
    def get_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | str | Path | None = None,
        architecture: str | None = None,
    ) -> dict[str, Any]:
        """The inputs of ``protocol`` for ``architecture`` (the protocol's first one by default):
        the default inputs, merged with the protocol's, merged with ``overrides`` (a mapping or a YAML
        file of the same shape); at every level the later wins and nested mappings merge."""
        content = cls._load_protocol_file()
        name = protocol or str(content["default_protocol"])
        protocols = content["protocols"]
        if name not in protocols:
            raise ConfigError(f"unknown protocol {name!r}; choose from {sorted(protocols)}")
        chosen = copy.deepcopy(protocols[name])
        models: dict[str, dict[str, Any]] = chosen.pop("models")
        architecture = architecture or next(iter(models))
        if architecture not in models:
            raise ConfigError(
                f"the {name!r} protocol has no recipe for the architecture {architecture!r}; "
                f"choose from {sorted(models)}"
            )
        chosen.pop("description")
        recipe = _preset(chosen.pop("preset", None))
        parameters = {
            "model": {**recipe["model"], "architecture": architecture, **models[architecture]},
            "train": recipe["train"],
        }
        inputs = recursive_merge(content["default_inputs"], {"train": {"parameters": parameters}})
        inputs = recursive_merge(inputs, chosen)
        if isinstance(overrides, (str, Path)):
            overrides = yaml.safe_load(Path(overrides).read_text()) or {}
        return recursive_merge(inputs, overrides or {})

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        dataset: orm.Data,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | str | Path | None = None,
        architecture: str | None = None,
    ) -> ProcessBuilder:
        """A builder for training on ``dataset`` with ``code``, its inputs from ``protocol``
        (:meth:`get_available_protocols`; :meth:`get_default_protocol` when None).

        Parameters
        ----------
        code
            The ``aiida-cgcnn`` command on the computer to train on.
        dataset
            A :class:`~aiida_cgcnn.data.dataset.CrystalDatasetData`.
        overrides
            Inputs that replace the protocol's, in the shape of :meth:`get_protocol_inputs`, e.g.
            ``{"train": {"parameters": {"train": {"epochs": 20}}}}``; other keys under ``train``
            (``model`` to fine-tune, ``parent_folder`` to continue) go to the calculation as they are.
        architecture
            ``cgcnn`` or ``alignn`` (the protocol's first architecture when None).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides, architecture)
        train = dict(inputs.pop("train"))
        builder: ProcessBuilder = cls.get_builder()  # type: ignore[attr-defined]
        calculation = builder["train"]
        calculation["code"] = code
        calculation["dataset"] = dataset
        calculation["parameters"] = orm.Dict(train.pop("parameters"))
        calculation["metadata"] = train.pop("metadata", {})
        for key, value in train.items():
            calculation[key] = value
        for key, value in inputs.items():
            builder[key] = value
        return builder


def _preset(name: str | None) -> dict[str, dict[str, Any]]:
    if name is None:
        return {"model": {}, "train": {}}
    from ...training.presets import preset

    recipe = preset(name)
    recipe["model"].pop("architecture", None)  # the protocol's models name it
    return recipe
