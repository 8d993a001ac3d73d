"""An :class:`~aiida_cgcnn.data.ensemble.EnsembleData` made of trained ``ModelData`` nodes.

:func:`ensemble_from_models` writes the model folder that ``aiida-cgcnn pretrained build`` would
write (``card.json`` and the member checkpoints) for models trained in the profile, so the
ensemble's mean, spread and out-of-domain flags reach ``cgcnn.predict``, the ASE calculator and the
work chains as those of a shipped ensemble do.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile
import typing as t

from aiida import orm
from aiida.engine import calcfunction

from ... import __version__
from ...data.dataset import CrystalDatasetData
from ...data.ensemble import EnsembleData
from ...data.model import ModelData
from ...pretrained.registry import sha256_file

__all__ = ["BASES", "SETTINGS_KEYS", "ensemble_card", "ensemble_from_models"]

#: What an extensive target's value is per (see :class:`aiida_cgcnn.ensemble.Ensemble`).
BASES = ("intensive", "primitive cell", "formula unit")
#: Keys of the optional ``settings`` input.
SETTINGS_KEYS = ("name", "version", "title", "basis", "std_scale", "domain", "functional", "description")


def _name(key: str, model: ModelData) -> str:
    return f"member {key!r} (ModelData<{model.pk}>)"


def _training_datasets(members: dict[str, ModelData]) -> list[CrystalDatasetData] | None:
    """Each member's training dataset, or None when one of them is not in the profile."""
    datasets = []
    for model in members.values():
        dataset = model.get_training_dataset()
        if dataset is None:
            return None
        datasets.append(dataset)
    return datasets


def _domain(datasets: list[CrystalDatasetData] | None) -> dict[str, t.Any] | None:
    """Elements and cell sizes (min, max atoms) of the members' training data together, as a shipped
    card's ``domain``; None (no check) when a member's training data is unknown."""
    if not datasets:
        return None
    elements: set[str] = set()
    low, high = None, None
    for node in {d.uuid: d for d in datasets}.values():
        elements.update(node.base.attributes.get("elements", []))
        atoms = node.get_dataset().num_atoms
        low = int(atoms.min()) if low is None else min(low, int(atoms.min()))
        high = int(atoms.max()) if high is None else max(high, int(atoms.max()))
    return {"elements": sorted(elements), "num_atoms": [low, high]}


def _basis(value: t.Any, targets: list[str]) -> list[str]:
    if value is None:
        return ["intensive"] * len(targets)
    if isinstance(value, str):
        value = dict.fromkeys(targets, value)
    if isinstance(value, list):
        if len(value) != len(targets):
            raise ValueError(f"settings basis {value}: one per target {targets}")
        value = dict(zip(targets, value, strict=True))
    unknown = sorted(set(value) - set(targets))
    if unknown:
        raise ValueError(f"settings basis names {unknown}, which are not targets of the members: {targets}")
    basis = [value.get(name, "intensive") for name in targets]
    wrong = [b for b in basis if b not in BASES]
    if wrong:
        raise ValueError(f"settings basis {wrong[0]!r}: use one of {', '.join(BASES)}")
    return basis


def ensemble_card(
    members: dict[str, ModelData], files: list[pathlib.Path], settings: dict[str, t.Any]
) -> dict[str, t.Any]:
    """The ``card.json`` entry of an ensemble of ``members`` (checkpoint ``files`` in the same order)."""
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise ValueError(f"unknown ensemble settings {unknown}; known: {', '.join(SETTINGS_KEYS)}")
    keys = list(members)
    first = members[keys[0]]
    for key in keys:
        model = members[key]
        if model.base.attributes.get("task") != "regression":
            raise ValueError(f"{_name(key, model)} is a classifier: an ensemble averages regression models")
        if model.targets != first.targets or model.units != first.units:
            raise ValueError(
                f"{_name(key, model)} predicts {list(zip(model.targets, model.units, strict=True))} "
                f"(name, unit), {_name(keys[0], first)} predicts "
                f"{list(zip(first.targets, first.units, strict=True))}: every member must predict the "
                "same targets in the same units"
            )
    targets = list(first.targets)
    basis = _basis(settings.get("basis"), targets)
    std_scale = [float(s) for s in settings.get("std_scale", [1.0] * len(targets))]
    if len(std_scale) != len(targets) or any(s <= 0 for s in std_scale):
        raise ValueError(f"settings std_scale {std_scale}: one positive factor per target {targets}")
    digest = hashlib.sha256("".join(sorted(m.sha256 for m in members.values())).encode()).hexdigest()
    datasets = _training_datasets(members)
    where = sorted({f"CrystalDatasetData<{d.pk}>" for d in datasets}) if datasets else ["unknown data"]
    source = " and ".join(where) if len(where) < 3 else f"{len(where)} datasets"
    pooling = {m.base.attributes.get("pooling", "mean") for m in members.values()}
    architecture = {m.base.attributes.get("architecture", "cgcnn") for m in members.values()}
    return {
        "name": settings.get("name") or f"ensemble-{digest[:8]}",
        "version": int(settings.get("version", 1)),
        "title": settings.get("title")
        or f"ensemble of {len(members)} trained models of {', '.join(targets)}",
        # model_label reads the source's first path part and its functional
        "source": {
            "path": source.replace("/", "_"),
            "functional": settings.get("functional", "unknown"),
            "description": settings.get("description", f"models trained in this profile on {source}"),
            "licence": "",
        },
        "model": {
            "architecture": architecture.pop() if len(architecture) == 1 else "mixed",
            "pooling": pooling.pop() if len(pooling) == 1 else "mixed",
        },
        "members": len(members),
        "member_models": {key: members[key].uuid for key in keys},
        "targets": [
            {"name": name, "unit": unit, "basis": b}
            for name, unit, b in zip(targets, first.units, basis, strict=True)
        ],
        "files": [{"path": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files],
        "data": {"dataset_sha256": first.dataset_sha256}
        if len({m.dataset_sha256 for m in members.values()}) == 1
        else {},
        # raw spread unless a calibrated scale is given: no calibration part was held out here
        "std_scale": std_scale,
        "domain": settings["domain"] if "domain" in settings else _domain(datasets),
        "package_version": __version__,
    }


@calcfunction
def ensemble_from_models(settings: orm.Dict | None = None, **members: ModelData) -> EnsembleData:
    """An ensemble of the trained ``members`` (a namespace of ``ModelData``, same targets and units):
    predictions are the members' mean, the spread their standard deviation (``ddof=0``, as
    :class:`~aiida_cgcnn.ensemble.Ensemble`) times ``std_scale``.

    ``settings`` (optional) may give ``name`` (default ``ensemble-`` and a digest of the members),
    ``version`` (1), ``title``, ``basis`` (per target, or one for all: ``intensive`` (default),
    ``primitive cell`` or ``formula unit``), ``std_scale`` (one factor per target; default 1: the raw,
    uncalibrated spread), ``domain`` (``elements`` and ``num_atoms`` [min, max]; default: those of the
    members' training datasets when every one is in the profile, else no domain check),
    ``functional`` and ``description`` of the training data.
    """
    if not members:
        raise ValueError("ensemble_from_models needs at least one member: ModelData nodes as keywords")
    for key, node in members.items():
        if not isinstance(node, ModelData):
            raise TypeError(f"member {key!r} is a {type(node).__name__}<{node.pk}>, not a ModelData")
    options = settings.get_dict() if settings is not None else {}
    keys = sorted(members)  # a namespace has no order: members in link-label order
    with tempfile.TemporaryDirectory(prefix="cgcnn-ensemble-") as tmp:
        folder = pathlib.Path(tmp)
        files = []
        for k, key in enumerate(keys):
            files.append(members[key].export(folder / f"member-{k}.pt"))
        card = ensemble_card({key: members[key] for key in keys}, files, options)
        (folder / "card.json").write_text(json.dumps(card, indent=1))
        ensemble = EnsembleData(folder=folder)
    return ensemble
