"""The calculator's ``record=True``: predictions stored through ``predict_structures``.

Kept apart from :mod:`.calculator` so that the calculator imports no AiiDA and the dependency goes one
way: ``ase.record`` -> ``calculations.functions`` -> ``data`` (the data nodes import nothing of ``ase``).
"""

from __future__ import annotations

import contextlib
import typing as t
from collections.abc import Sequence
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.hashing import make_hash

from ..calculations.functions.predict import predict_structures
from ..data.ensemble import EnsembleData
from ..data.model import ModelData
from ..data.prediction import PredictionData

__all__ = ["record_ensemble", "record_model", "stored_structure"]


def stored_structure(atoms: Any) -> orm.StructureData:
    """The stored ``StructureData`` of ``atoms``: one with the same content (aiida-core's node hash),
    else a new one, so predicting the same ``Atoms`` again adds no structure to the graph."""
    node = orm.StructureData(ase=atoms)
    digest = make_hash(node.base.caching.get_objects_to_hash())  # what store() records as its hash
    query = orm.QueryBuilder().append(
        orm.StructureData, filters={"extras._aiida_hash": digest}, subclassing=False, project="*"
    )
    with _no_autoflush():
        existing = query.first(flat=True)
    if existing is not None:
        return t.cast(orm.StructureData, existing)
    node.label = atoms.get_chemical_formula()
    return node.store()


def _no_autoflush() -> t.ContextManager[t.Any]:
    """The SQLAlchemy session of the storage without autoflush: the unstored node just made for its
    hash would otherwise make SQLAlchemy warn that it is not in the session."""
    from aiida.manage import get_manager

    get_session = getattr(get_manager().get_profile_storage(), "get_session", None)
    return get_session().no_autoflush if get_session is not None else contextlib.nullcontext()


def _record(model: orm.Data, images: Sequence[Any]) -> tuple[list[orm.StructureData], list[PredictionData]]:
    # unique link labels even when one structure is given twice: the calcfunction takes a node once
    structures = [stored_structure(atoms) for atoms in images]
    unique = {node.uuid: node for node in structures}
    labels = {uuid: f"s{k}" for k, uuid in enumerate(unique)}
    result = predict_structures(
        model=t.cast("ModelData | EnsembleData", model),
        **{labels[uuid]: node for uuid, node in unique.items()},
    )
    return structures, [result[labels[node.uuid]] for node in structures]


def record_model(
    model: orm.Data, images: Sequence[Any], columns: Sequence[str], site_targets: Sequence[str] = ()
) -> tuple[list[orm.StructureData], np.ndarray, list[np.ndarray] | None]:
    """Record a ``ModelData``'s predictions for ``images``: the stored structures, the values of
    ``columns`` (targets, or classes of a classifier) as an array (images, columns) and, for a
    site-pooled model (``site_targets``: its targets), each image's site contributions (sites, targets)."""
    structures, records = _record(model, images)
    values = np.array([[record["values"][c] for c in columns] for record in records])
    sites = None
    if site_targets:
        sites = [
            np.array([record["site_contributions"][name] for name in site_targets]).T for record in records
        ]
    return structures, values, sites


def record_ensemble(
    model: orm.Data, images: Sequence[Any]
) -> tuple[list[orm.StructureData], list[dict[str, Any]]]:
    """Record an ``EnsembleData``'s predictions for ``images``: the stored structures and rows as
    :meth:`~aiida_cgcnn.ensemble.EnsemblePrediction.rows` gives them."""
    structures, records = _record(model, images)
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "cell_atoms": record["cell_atoms"],
            "basis_atoms": record["basis_atoms"],
            "out_of_domain": record["out_of_domain"],
        }
        for name, value in record["values"].items():
            row[f"{name}_pred"] = value
            row[f"{name}_std"] = record["std"][name]
        for key in ("per_atom", "per_atom_std", "per_formula_unit"):
            for name, value in record[key].items():
                row[f"{name}_{key}"] = value
        rows.append(row)
    return structures, rows
