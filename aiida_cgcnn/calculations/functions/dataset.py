"""Datasets from ``StructureData`` nodes, built by a calcfunction so every structure is linked."""

from __future__ import annotations

import hashlib
import json
import typing as t
from collections.abc import Sequence

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ...data.dataset import CrystalDatasetData
from ...training.dataset import CrystalDataset

__all__ = ["create_dataset", "dataset_from_structures"]


@calcfunction
def create_dataset(
    targets: orm.Dict,
    target_names: orm.List,
    units: orm.List,
    options: orm.Dict,
    **structures: orm.StructureData,
) -> CrystalDatasetData:
    """Build a :class:`CrystalDatasetData` from ``structures`` (namespace) and their targets.

    ``targets`` maps each structure's link label to a value or a list of values; the dataset ids are
    the structures' UUIDs, which is how predictions find their way back to the structures.
    ``options`` may hold ``task``, ``classes`` and ``skip_invalid`` (leave out invalid structures;
    their UUIDs and reasons are stored in the node's ``skipped`` attribute).
    """
    labels = sorted(structures)
    values = targets.get_dict()
    missing = [label for label in labels if label not in values]
    if missing:
        raise ValueError(f"no target for structures {missing[:10]}")
    rows = np.array([np.atleast_1d(np.asarray(values[label], dtype=np.float64)) for label in labels])
    opts = options.get_dict()
    dataset, skipped = CrystalDataset.from_structures(
        [structures[label].get_ase() for label in labels],
        rows,
        ids=[structures[label].uuid for label in labels],
        target_names=list(target_names.get_list()),
        units=list(units.get_list()),
        task=opts.get("task", "regression"),
        classes=opts.get("classes", ()),
        skip_invalid=bool(opts.get("skip_invalid", False)),
    )
    node = CrystalDatasetData.from_dataset(dataset)
    node.base.attributes.set("skipped", {s.id: s.reason for s in skipped})
    node.base.attributes.set(
        "inputs_sha256",
        inputs_digest(
            [structures[label].uuid for label in labels],
            rows,
            target_names.get_list(),
            units.get_list(),
            opts,
        ),
    )
    return node


def inputs_digest(
    uuids: Sequence[str],
    rows: np.ndarray,
    target_names: Sequence[str],
    units: Sequence[str],
    options: dict[str, t.Any],
) -> str:
    """One digest of what :func:`create_dataset` is given: the same structures (in order), targets,
    names, units and options make the same dataset."""
    payload = {
        "structures": list(uuids),
        # 12 digits: a Dict input keeps floats to 14, so the digest is the same before and after storing
        "targets": [[f"{x:.12e}" for x in row] for row in np.asarray(rows, dtype=np.float64)],
        "target_names": list(target_names),
        "units": list(units),
        "options": {k: options[k] for k in sorted(options)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def dataset_from_structures(
    structures: Sequence[orm.StructureData] | orm.Group,
    targets: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    target_names: Sequence[str] = ("target",),
    units: Sequence[str] = ("",),
    task: str = "regression",
    classes: Sequence[str] = (),
    skip_invalid: bool = False,
) -> CrystalDatasetData:
    """Run :func:`create_dataset` for a list or group of stored ``StructureData`` and aligned targets.

    The same structures with the same targets, names, units and options give the dataset node made the
    first time (found by its ``inputs_sha256`` attribute), not a second one. A dataset made from a group
    is labelled with the group's label.
    """
    label = ""
    if isinstance(structures, orm.Group):
        label = structures.label
        structures = [n for n in structures.nodes if isinstance(n, orm.StructureData)]
    structures = list(structures)
    targets = np.asarray(targets, dtype=np.float64)
    if len(targets) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(targets)} targets")
    options = {"task": task, "classes": list(classes), "skip_invalid": skip_invalid}
    rows = np.array([np.atleast_1d(row) for row in targets])
    digest = inputs_digest([s.uuid for s in structures], rows, target_names, units, options)
    query = orm.QueryBuilder().append(
        CrystalDatasetData, filters={"attributes.inputs_sha256": digest}, project="*"
    )
    existing = query.first(flat=True)
    if existing is not None:
        return t.cast(CrystalDatasetData, existing)
    width = len(str(max(len(structures) - 1, 0)))
    labels = [f"s{k:0{width}d}" for k in range(len(structures))]
    what = f"group {label}" if label else f"{len(structures)} structures"
    node = create_dataset(
        targets=orm.Dict({link: targets[k].tolist() for k, link in enumerate(labels)}),
        target_names=orm.List(list(target_names)),
        units=orm.List(list(units)),
        options=orm.Dict(options),
        metadata={"label": f"dataset from {what}"[:255]},  # type: ignore[arg-type]  # an engine input
        **dict(zip(labels, structures, strict=True)),
    )
    if label and not node.label:
        node.label = label
    return node
