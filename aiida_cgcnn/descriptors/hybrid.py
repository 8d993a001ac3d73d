"""Descriptors as extra inputs of the hybrid models (de-CGCNN, Eq. 14 of the paper).

The descriptors travel as the dataset's extra per-structure ``features`` (descriptor columns first,
then any features of the user's own), and the dataset's ``metadata["descriptors"]`` records their
names, columns and settings. The trainer copies that record into the checkpoint, so a
:class:`~aiida_cgcnn.predict.Predictor` computes the same descriptors, with the same settings, for
new structures; the head standardises them with the training set's means and scales, which live in
the checkpoint as buffers (``head.extra_mean``, ``head.extra_std``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..structures import Crystal
from ..training.dataset import CrystalDataset, Skipped, _invalid_message
from .definitions import ALL_DESCRIPTORS, DescriptorSettings, descriptor_columns, resolve_names
from .engine import compute_descriptors, elements_without_descriptors

__all__ = [
    "DESCRIPTOR_RECORD_VERSION",
    "attach_descriptors",
    "attach_features",
    "descriptor_record",
    "descriptor_values",
    "drop_features",
    "model_inputs",
    "read_feature_csv",
    "select_features",
    "stored_columns",
]

DESCRIPTOR_RECORD_VERSION = 1
_ALL_COLUMNS = frozenset(descriptor_columns(list(ALL_DESCRIPTORS)))


def descriptor_record(dataset: CrystalDataset) -> dict[str, Any]:
    """The dataset's record of the descriptors among its features (empty if none)."""
    return dict(dataset.metadata.get("descriptors") or {})


def _with_features(
    dataset: CrystalDataset, features: np.ndarray | None, names: list[str], record: dict | None
) -> CrystalDataset:
    metadata = {k: v for k, v in dataset.metadata.items() if k != "descriptors"}
    if record:
        metadata["descriptors"] = record
    copy = dataset.subset(np.arange(len(dataset)))
    copy.features = None if features is None else np.asarray(features, dtype=np.float64)
    copy.feature_names = list(names) if features is not None else []
    copy.metadata = metadata
    return copy


def descriptor_values(
    dataset: CrystalDataset,
    names: str | Sequence[str] | None = "all",
    settings: DescriptorSettings | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray, list[tuple[int, str]]]:
    """Raw descriptor values (``crys_sys`` as 1-7) of the dataset's structures.

    Taken from the dataset's stored columns when they were computed with the same settings,
    computed otherwise.

    Returns
    -------
    values, names, positions, failures
        ``values[k]`` belongs to structure ``positions[k]``; ``failures`` are ``(position, message)``.
    """
    from .definitions import CRYSTAL_SYSTEMS

    names = resolve_names(names)
    settings = settings or DescriptorSettings()
    record = descriptor_record(dataset)
    stored = dataset.feature_names
    if (
        record
        and dataset.features is not None
        and DescriptorSettings.from_dict(record.get("settings")) == settings
        and set(descriptor_columns(names)) <= set(stored)
    ):
        columns = []
        for name in names:
            if name == "crys_sys":
                one_hot = dataset.features[:, [stored.index(f"crys_sys={s}") for s in CRYSTAL_SYSTEMS]]
                columns.append(one_hot.argmax(axis=1) + 1.0)
            else:
                columns.append(dataset.features[:, stored.index(name)])
        return np.stack(columns, axis=1), names, np.arange(len(dataset)), []
    table = compute_descriptors(list(dataset.crystals()), names, settings, workers)
    return table.values, names, table.positions, table.failures


def stored_columns(dataset: CrystalDataset, record: dict[str, Any]) -> list[str]:
    """Names of the dataset's feature columns that a model with descriptor ``record`` may use: its
    descriptor columns only if they were computed with the model's settings (else they are renamed
    ``stale:<name>``, so that they are computed afresh)."""
    names = list(dataset.feature_names)
    own = descriptor_record(dataset)
    same = DescriptorSettings.from_dict(own.get("settings")) == DescriptorSettings.from_dict(
        record.get("settings")
    )
    if not record or (own and same):
        return names
    return [f"stale:{n}" if n in _ALL_COLUMNS else n for n in names]


def drop_features(dataset: CrystalDataset) -> CrystalDataset:
    """A copy of ``dataset`` without extra features (a plain, non-hybrid model trains on it)."""
    return _with_features(dataset, None, [], None)


def _own_columns(dataset: CrystalDataset) -> tuple[np.ndarray, list[str]]:
    """The dataset's features that are not descriptors (the user's own)."""
    if dataset.features is None:
        return np.zeros((len(dataset), 0)), []
    keep = [j for j, name in enumerate(dataset.feature_names) if name not in _ALL_COLUMNS]
    return dataset.features[:, keep], [dataset.feature_names[j] for j in keep]


def attach_descriptors(
    dataset: CrystalDataset,
    names: str | Sequence[str] | None = "all",
    settings: DescriptorSettings | None = None,
    workers: int | None = None,
    skip_invalid: bool = False,
) -> tuple[CrystalDataset, list[Skipped]]:
    """A copy of ``dataset`` whose features are the descriptors ``names`` and the user's own features.

    Descriptors already stored in the dataset with the same settings are reused, not recomputed.

    Raises
    ------
    DatasetError
        Listing every structure whose descriptors cannot be computed, unless ``skip_invalid``
        (then they are left out and returned).
    """
    names = resolve_names(names)
    settings = settings or DescriptorSettings()
    columns = descriptor_columns(names)
    own, own_names = _own_columns(dataset)
    record = descriptor_record(dataset)
    stored = dataset.feature_names
    skipped: list[Skipped] = []
    if (
        record
        and dataset.features is not None
        and DescriptorSettings.from_dict(record.get("settings")) == settings
        and set(columns) <= set(stored)
    ):
        values = dataset.features[:, [stored.index(c) for c in columns]]
    else:
        crystals = list(dataset.crystals())
        # fail in seconds, not after minutes of Voronoi work, when the elements already rule it out
        known = elements_without_descriptors(crystals, names)
        if known and not skip_invalid:
            raise DatasetError(_invalid_message([Skipped(str(dataset.ids[p]), m) for p, m in known]))
        table = compute_descriptors(crystals, names, settings, workers)
        skipped = [Skipped(str(dataset.ids[p]), message) for p, message in table.failures]
        if skipped and not skip_invalid:
            raise DatasetError(_invalid_message(skipped))
        if not len(table.positions):
            raise DatasetError("no structure of the dataset has the requested descriptors")
        if skipped:
            dataset = dataset.subset(table.positions)
            own = own[table.positions]
        values, _ = table.columns()
    new_record = {
        "version": DESCRIPTOR_RECORD_VERSION,
        "names": list(names),
        "columns": columns,
        "settings": settings.to_dict(),
    }
    features = np.concatenate([values, own], axis=1)
    return _with_features(dataset, features, columns + own_names, new_record), skipped


def select_features(
    dataset: CrystalDataset, spec: str, skip_invalid: bool = False, workers: int | None = None
) -> tuple[CrystalDataset, list[Skipped]]:
    """The features a model trains with, from a command-line spec.

    ``none`` drops all features; ``all``, ``local``, ``global`` or comma-separated names attach
    those descriptors (kept from the dataset when stored, computed otherwise) to the user's own.
    """
    if spec.strip().lower() == "none":
        return drop_features(dataset), []
    return attach_descriptors(dataset, spec, workers=workers, skip_invalid=skip_invalid)


def read_feature_csv(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read a CSV of the user's own features: an ``id`` column, then one numeric column per feature."""
    path = Path(path)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][0].strip().lower() != "id" or len(rows[0]) < 2:
        raise DatasetError(f"{str(path)!r} must start with a header 'id,<feature>,...'")
    names = [n.strip() for n in rows[0][1:]]
    clash = sorted(set(names) & _ALL_COLUMNS)
    if clash:
        raise DatasetError(f"{str(path)!r}: feature names {clash} are descriptor names; rename them")
    ids, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            values.append([float(v) for v in row[1:]])
        except ValueError:
            raise DatasetError(f"{str(path)!r} line {line}: non-numeric feature value") from None
        if len(values[-1]) != len(names):
            raise DatasetError(
                f"{str(path)!r} line {line}: {len(values[-1])} values for {len(names)} features"
            )
        ids.append(row[0].strip())
    array = np.array(values, dtype=np.float64).reshape(len(ids), len(names))
    if not np.all(np.isfinite(array)):
        bad = [ids[k] for k in np.unique(np.nonzero(~np.isfinite(array))[0])]
        raise DatasetError(f"{str(path)!r}: missing or non-finite features for {bad[:10]}")
    return ids, names, array


def attach_features(
    dataset: CrystalDataset, ids: Sequence[str], names: Sequence[str], values: np.ndarray
) -> CrystalDataset:
    """A copy of ``dataset`` with the user's features ``values`` (rows matched by structure id)
    appended to its features; every structure of the dataset needs a row."""
    index = {str(i): k for k, i in enumerate(ids)}
    missing = [str(i) for i in dataset.ids if str(i) not in index]
    if missing:
        raise DatasetError(f"no features for {len(missing)} structure(s), e.g. {missing[:10]}")
    rows = np.asarray(values, dtype=np.float64)[[index[str(i)] for i in dataset.ids]]
    existing = dataset.features if dataset.features is not None else np.zeros((len(dataset), 0))
    taken = sorted(set(names) & set(dataset.feature_names))
    if taken:
        raise DatasetError(f"the dataset already has features named {taken}")
    return _with_features(
        dataset,
        np.concatenate([existing, rows], axis=1),
        list(dataset.feature_names) + list(names),
        descriptor_record(dataset),
    )


def model_inputs(
    record: dict[str, Any],
    feature_names: Sequence[str],
    crystals: Sequence[Crystal],
    features: np.ndarray | None = None,
    source_names: Sequence[str] | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """The extra inputs a hybrid model needs for ``crystals``, in its column order.

    Parameters
    ----------
    record
        The checkpoint's descriptor record (names, columns, settings).
    feature_names
        The model's input columns.
    features, source_names
        Features the caller has: all of the model's columns (taken as they are), a stored table
        whose column names are ``source_names`` (columns taken by name), or only the user's own
        columns (descriptors are computed and put in front of them).

    Returns
    -------
    features, kept, failures
        The input matrix for the crystals at positions ``kept``, and ``(position, message)`` for
        the crystals whose descriptors cannot be computed.
    """
    feature_names = list(feature_names)
    everything = list(range(len(crystals)))
    if features is not None:
        features = np.asarray(features, dtype=np.float64).reshape(len(crystals), -1)
        if source_names is not None and set(feature_names) <= set(source_names):
            source = list(source_names)
            return features[:, [source.index(n) for n in feature_names]], everything, []
        if source_names is None and features.shape[1] == len(feature_names):
            return features, everything, []
    columns = list(record.get("columns", []))
    own_names = [n for n in feature_names if n not in columns]
    own = np.zeros((len(crystals), 0))
    if own_names:
        if features is not None and source_names is not None and set(own_names) <= set(source_names):
            own = features[:, [list(source_names).index(n) for n in own_names]]
        elif features is not None and source_names is None and features.shape[1] == len(own_names):
            own = features
        else:
            raise DatasetError(
                f"this model needs the per-structure features {own_names} besides its descriptors; pass them"
            )
    settings = DescriptorSettings.from_dict(record.get("settings"))
    table = compute_descriptors(list(crystals), list(record["names"]), settings, workers)
    values, computed_columns = table.columns()
    by_name = dict(zip(computed_columns, values.T, strict=True))
    by_name.update(zip(own_names, own[table.positions].T, strict=True))
    matrix = np.stack([by_name[n] for n in feature_names], axis=1) if feature_names else values
    return matrix.reshape(len(table.positions), len(feature_names)), table.positions.tolist(), table.failures
