"""Calcfunctions of ``cgcnn.screen``: a dataset per shard of structures, and one table of every prediction.

:func:`screen_shard` makes the ``CrystalDatasetData`` a ``cgcnn.predict`` job of one shard reads; its
inputs are the shard's structures, so each structure's prediction is found from the structure
(``StructureData`` -> ``screen_shard`` -> dataset -> ``cgcnn.predict`` -> ``predictions``, the rule of
:func:`aiida_cgcnn.provenance.find_predictions`) without a node per structure.
:func:`screening_table` gathers the shards' predictions into one CSV in input order and applies the
criterion; :func:`read_screening_table` reads it back.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..._gc import without_gc
from ...data.dataset import CrystalDatasetData
from ...elements import MAX_ATOMIC_NUMBER, NOBLE_GASES
from ...errors import InvalidStructureError
from ...selection import Criterion
from ...structures import Crystal, to_crystal
from ...training.dataset import CrystalDataset

__all__ = [
    "TABLE_FILENAME",
    "crystal_from_attributes",
    "read_screening_table",
    "screen_shard",
    "screen_shard_by_uuid",
    "screening_table",
    "shard_link_label",
    "shard_record",
    "shard_uuids",
    "shard_uuids_node",
]

#: The file of the table node.
TABLE_FILENAME = "screening.csv"
#: How many invalid structures the summary names (the table lists every one).
SUMMARY_INVALID = 1000
#: How many of the largest spreads the summary names (candidates for a verification).
SUMMARY_UNCERTAIN = 100
_TEXT = ("uuid", "label", "status", "reason", "out_of_domain")
_INT = ("position", "pk", "shard", "cell_atoms", "basis_atoms", "rank")


def shard_link_label(position: int) -> str:
    """Link label of the structure at ``position`` (0-based, in input order) among a shard's inputs: the
    labels sort as the positions do."""
    return f"s{position:09d}"


def crystal_from_attributes(sid: str, attributes: dict[str, t.Any]) -> Crystal:
    """A validated :class:`Crystal` from a ``StructureData``'s attributes (``cell``, ``pbc1..3``, ``kinds``,
    ``sites``) without building an ASE or pymatgen object; raises :class:`InvalidStructureError`."""

    kinds = _kind_numbers(sid, attributes)
    cell = np.asarray(attributes.get("cell"), dtype=np.float64)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-3:
        raise InvalidStructureError(sid, "has no cell", "give it a 3D cell")
    sites = attributes.get("sites", [])
    positions = np.asarray([site["position"] for site in sites], dtype=np.float64).reshape(-1, 3)
    numbers = np.asarray([kinds[site["kind_name"]] for site in sites], dtype=np.int64)
    frac = np.linalg.solve(cell.T, positions.T).T if len(sites) else positions
    return to_crystal(Crystal(sid, cell, frac, numbers))  # the checks every model needs


def _kind_numbers(sid: str, attributes: dict[str, t.Any]) -> dict[str, int]:
    """Kind name -> atomic number of a periodic, ordered ``StructureData``'s attributes; raises
    :class:`InvalidStructureError`."""
    atomic_numbers = _atomic_numbers()
    get = attributes.get  # once per structure of a shard of 10^5: no generator, no import
    if not (get("pbc1", True) and get("pbc2", True) and get("pbc3", True)):
        raise InvalidStructureError(sid, "is not periodic in all three directions", "give it a 3D cell")
    kinds = {}
    for kind in attributes.get("kinds", []):
        symbols, weights = kind["symbols"], kind["weights"]
        if len(symbols) != 1 or abs(sum(weights) - 1.0) > 1e-6:
            raise InvalidStructureError(
                sid,
                f"has partial occupancy or disordered sites (kind {kind['name']!r})",
                "order it first, or skip it",
            )
        if symbols[0] not in atomic_numbers or symbols[0] == "X":
            raise InvalidStructureError(
                sid, f"has a site of unknown element {symbols[0]}", "remove that site"
            )
        kinds[kind["name"]] = atomic_numbers[symbols[0]]
    return kinds


@functools.cache
def _atomic_numbers() -> dict[str, int]:
    from ase.data import atomic_numbers

    return dict(atomic_numbers)


@calcfunction
def screen_shard(**structures: orm.StructureData) -> dict[str, orm.Data]:
    """The dataset one ``cgcnn.predict`` job of a screen reads: ``structures`` (link labels
    :func:`shard_link_label`, so in input order) with their UUIDs as ids and no targets.

    Every structure is an input, so the provenance graph links it to its prediction (and
    :func:`~aiida_cgcnn.provenance.find_predictions` follows that link); aiida-core adds input links one
    by one and compares each with those already added, which costs time in the square of the shard's
    size: :func:`screen_shard_by_uuid` is the one for large shards.

    Outputs ``structures`` (``ArrayData``: arrays ``uuids``, ``pks``, ``labels`` and ``atoms`` of every
    input in order, attribute ``invalid``: UUID -> reason of those left out; :func:`shard_record` reads
    it) and, when one structure is valid,
    ``dataset`` (``CrystalDatasetData``; its ``skipped`` attribute lists the invalid ones, and it names
    every structure of the shard: :meth:`~aiida_cgcnn.data.dataset.CrystalDatasetData.name_structures`).
    """
    records = []
    for label in sorted(structures):
        node = structures[label]
        # the attributes come with the node: no query per structure
        records.append((node.uuid, t.cast(int, node.pk), node.label, node.base.attributes.all))
    return _shard_outputs(records)


@calcfunction
def screen_shard_by_uuid(uuids: orm.List | orm.ArrayData) -> dict[str, orm.Data]:
    """:func:`screen_shard` of the stored structures whose UUIDs ``uuids`` lists (in that order), read
    with one query per thousand structures (their attributes, never a node object each) and not linked
    one by one: the time grows with the shard's size, not with its square. The structures are named by
    UUID in the input, in the ``structures`` output and by the dataset
    (:meth:`~aiida_cgcnn.data.dataset.CrystalDatasetData.name_structures`).

    ``uuids`` is a ``List`` or an ``ArrayData`` with the array ``uuids`` (what the screen gives: a list
    of 10^5 strings in a node's attributes costs aiida-core a second to clean, hash and store).
    """
    return _shard_by_uuid(shard_uuids(uuids))


@without_gc
def _shard_by_uuid(wanted: list[str]) -> dict[str, orm.Data]:
    # the decoded attributes are freed before the collector is on again: were they alive then, its
    # next passes would walk their millions of objects (half a second per shard of 5*10^4)
    found = _structure_records(wanted)
    missing = [u for u in wanted if u not in found]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(wanted)} UUIDs are no stored StructureData, e.g. {missing[0]}: "
            "screen stored structures only"
        )
    return _shard_outputs([found[u] for u in wanted])


def shard_uuids_node(uuids: list[str]) -> orm.ArrayData:
    """The ``uuids`` input of :func:`screen_shard_by_uuid` for ``uuids``, in order."""
    node = orm.ArrayData()
    node.set_array("uuids", np.array(uuids, dtype=str))
    return node


def shard_uuids(node: orm.List | orm.ArrayData) -> list[str]:
    """The UUIDs a shard's ``uuids`` input lists, in order."""
    if isinstance(node, orm.ArrayData):
        return [str(u) for u in node.get_array("uuids").tolist()]
    return [str(u) for u in node.get_list()]


def shard_record(node: orm.ArrayData | orm.Dict) -> dict[str, t.Any]:
    """A shard calcfunction's ``structures`` output as lists: ``uuids``, ``pks``, ``labels``, ``atoms``
    of every structure in input order, and ``invalid`` (UUID -> reason)."""
    if isinstance(node, orm.Dict):  # the output of screens made before it became arrays
        return dict(node.get_dict())
    return {
        "uuids": node.get_array("uuids").tolist(),
        "pks": node.get_array("pks").tolist(),
        "labels": node.get_array("labels").tolist(),
        "atoms": node.get_array("atoms").tolist(),
        "invalid": dict(node.base.attributes.get("invalid", {})),
    }


@without_gc
def _structure_records(uuids: list[str]) -> dict[str, tuple[str, int, str, dict[str, t.Any]]]:
    """UUID -> (uuid, pk, label, attributes) of the stored StructureData among ``uuids``.

    QueryBuilder hands every projected attribute through aiida-core's recursive ORM conversion, which
    tries each number of a site's position as an entity and catches the TypeError: about 2/3 of a
    10^5 screen's reading time. On SQLite storage (``core.sqlite_dos``), which keeps nodes in the
    ``db_dbnode`` table, the rows are read with one plain SELECT per chunk instead; other backends go
    through QueryBuilder.
    """
    session = _sqlite_session()
    if session is None:
        return _structure_records_querybuilder(uuids)
    from sqlalchemy import bindparam, text

    statement = text(
        "SELECT uuid, id, label, node_type, attributes FROM db_dbnode WHERE uuid IN :uuids"
    ).bindparams(bindparam("uuids", expanding=True))
    node_type = orm.StructureData.class_node_type
    found: dict[str, tuple[str, int, str, dict[str, t.Any]]] = {}
    other: list[str] = []  # subclasses (or no structures): QueryBuilder decides
    for start in range(0, len(uuids), _QUERY_CHUNK):
        rows = session.execute(statement, {"uuids": uuids[start : start + _QUERY_CHUNK]})
        for uuid, pk, label, kind, attributes in rows:
            if kind != node_type:
                other.append(str(uuid))
                continue
            # a text() query hands SQLite's JSON column over as text
            value = _json_loads(attributes) if isinstance(attributes, (str, bytes)) else attributes
            found[str(uuid)] = (str(uuid), int(pk), str(label), value)
    if other:
        found.update(_structure_records_querybuilder(other))
    return found


def _sqlite_session() -> t.Any:
    """The storage's SQLAlchemy session on SQLite storage (``core.sqlite_dos``, the backend these plain
    SELECTs on aiida-core's tables are tested on), else None."""
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    if type(storage).__name__ != "SqliteDosStorage" or not hasattr(storage, "get_session"):
        return None
    return storage.get_session()


@without_gc
def group_structure_rows(group: orm.Group) -> list[tuple[int, str]]:
    """(pk, UUID) of the group's StructureData, by pk; on SQLite one plain SELECT, since QueryBuilder
    converts every projected value (1.5 s for 10^5 members)."""
    session = _sqlite_session()
    if session is not None:
        from sqlalchemy import text

        rows = session.execute(
            text(
                "SELECT n.id, n.uuid, n.node_type FROM db_dbgroup_dbnodes AS g JOIN db_dbnode AS n "
                "ON n.id = g.dbnode_id WHERE g.dbgroup_id = :group ORDER BY n.id"
            ),
            {"group": group.pk},
        ).all()
        node_type = orm.StructureData.class_node_type
        structures = [(int(pk), str(uuid)) for pk, uuid, kind in rows if kind == node_type]
        # another Data type could subclass StructureData: QueryBuilder knows
        if not any(kind != node_type and kind.startswith("data.") for _, _, kind in rows):
            return structures
    query = group_structures(group)
    query.add_projection("structure", ["id", "uuid"])
    return sorted((int(pk), str(uuid)) for pk, uuid in query.all())


def group_structures(group: orm.Group) -> orm.QueryBuilder:
    """A query of the group's StructureData (tag ``structure``)."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters={"id": group.pk}, tag="group")
    query.append(orm.StructureData, with_group="group", tag="structure")
    return query


@without_gc
def _structure_records_querybuilder(uuids: list[str]) -> dict[str, tuple[str, int, str, dict[str, t.Any]]]:
    found: dict[str, tuple[str, int, str, dict[str, t.Any]]] = {}
    for start in range(0, len(uuids), _QUERY_CHUNK):
        query = orm.QueryBuilder().append(
            orm.StructureData,
            filters={"uuid": {"in": uuids[start : start + _QUERY_CHUNK]}},
            project=["uuid", "id", "label", "attributes"],
        )
        for uuid, pk, label, attributes in query.iterall():
            found[str(uuid)] = (str(uuid), int(pk), str(label), dict(attributes))
    return found


_json_loads: t.Callable[[str | bytes], t.Any]
try:  # pymatgen's dependency, 1.7x faster than json on structures' attributes (same floats)
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover
    _json_loads = json.loads


#: Structures per query when reading a shard by UUID (below SQLite's limit of bound variables).
_QUERY_CHUNK = 1000


@without_gc
def _shard_outputs(records: list[tuple[str, int, str, dict[str, t.Any]]]) -> dict[str, orm.Data]:
    """The outputs of a shard's calcfunction from (uuid, pk, label, attributes) per structure."""
    uuids = [r[0] for r in records]
    dataset, invalid = _pack(uuids, [r[3] for r in records])
    # arrays, not a Dict: aiida-core deep-copies, compares and hashes a Dict's lists item by item
    # wherever the node is an input (seconds for a shard of 10^5); an array is hashed as bytes
    structures = orm.ArrayData()
    structures.set_array("uuids", np.array(uuids, dtype=str))
    structures.set_array("pks", np.array([r[1] for r in records], dtype=np.int64))
    structures.set_array("labels", np.array([r[2] for r in records], dtype=str))
    structures.set_array("atoms", np.array([len(r[3].get("sites", [])) for r in records], dtype=np.int64))
    structures.base.attributes.set("invalid", invalid)
    outputs: dict[str, orm.Data] = {"structures": structures}
    if dataset is not None:
        dataset_node = CrystalDatasetData.from_dataset(dataset)
        dataset_node.base.attributes.set("skipped", invalid)
        dataset_node.name_structures(uuids)
        outputs["dataset"] = dataset_node
    return outputs


def _pack(
    uuids: list[str], attributes: list[dict[str, t.Any]]
) -> tuple[CrystalDataset | None, dict[str, str]]:
    """The valid structures as one dataset (no targets: predictions need none) and the invalid ones,
    UUID -> reason.

    One pass collects the sites of all structures and the checks run on whole arrays, since numpy on a
    3x3 cell per structure costs more than the work; a structure any check flags goes through
    :func:`crystal_from_attributes`, which names its reason.
    """
    invalid: dict[str, str] = {}
    keep: list[int] = []
    lattices: list[t.Any] = []
    numbers: list[int] = []
    positions: list[t.Any] = []
    counts: list[int] = []
    for k, (sid, attrs) in enumerate(zip(uuids, attributes, strict=True)):
        try:
            kinds = _kind_numbers(sid, attrs)
            sites = attrs.get("sites", [])
            cell = attrs.get("cell")
            site_numbers = [kinds[site["kind_name"]] for site in sites]
            site_positions = [site["position"] for site in sites]
        except InvalidStructureError as error:
            invalid[sid] = str(error)
            continue
        except (KeyError, TypeError):  # malformed attributes: the careful path names the problem
            invalid[sid] = _reason(sid, attrs)
            continue
        keep.append(k)
        lattices.append(cell)
        numbers += site_numbers
        positions += site_positions
        counts.append(len(site_numbers))
    if keep:
        try:
            cells = np.asarray(lattices, dtype=np.float64).reshape(len(keep), 3, 3)
            xyz = np.asarray(positions, dtype=np.float64).reshape(len(numbers), 3)
        except (TypeError, ValueError):  # a ragged cell or position somewhere: structure by structure
            cells, xyz = None, None
    if not keep or cells is None or xyz is None:
        crystals = []
        for k in keep:
            found = _careful(uuids[k], attributes[k])
            if isinstance(found, str):
                invalid[uuids[k]] = found
            else:
                crystals.append(found)
        if not crystals:
            return None, _in_order(invalid, uuids)
        dataset = CrystalDataset.from_crystals(
            crystals, np.full((len(crystals), 1), np.nan), ["unknown"], [""]
        )
        return dataset, _in_order(invalid, uuids)

    n_atoms = np.asarray(counts, dtype=np.int64)
    z = np.asarray(numbers, dtype=np.int64)
    owner = np.repeat(np.arange(len(keep)), n_atoms)
    volume = np.abs(np.linalg.det(cells))
    finite = np.isfinite(cells).all(axis=(1, 2))
    finite &= (
        np.bincount(owner, weights=np.isfinite(xyz).all(axis=1).astype(float), minlength=len(keep)) == n_atoms
    )
    out_of_range = (
        np.bincount(owner, weights=((z < 1) | (z > MAX_ATOMIC_NUMBER)).astype(float), minlength=len(keep)) > 0
    )
    noble = (
        np.bincount(owner, weights=np.isin(z, sorted(NOBLE_GASES)).astype(float), minlength=len(keep))
        == n_atoms
    )
    suspect = (n_atoms == 0) | ~finite | (volume < 1e-3) | out_of_range | noble
    for j in np.flatnonzero(suspect):  # rare: the careful path names the reason
        invalid[uuids[keep[j]]] = _reason(uuids[keep[j]], attributes[keep[j]])
    good = ~suspect
    if not good.any():
        return None, _in_order(invalid, uuids)
    inverse = np.linalg.inv(cells[good])
    atom_good = good[owner]
    local = np.repeat(np.arange(int(good.sum())), n_atoms[good])  # each kept atom's structure
    frac = np.einsum("ai,aij->aj", xyz[atom_good], inverse[local])
    dataset = CrystalDataset(
        ids=np.array([uuids[k] for k, ok in zip(keep, good, strict=True) if ok], dtype=str),
        num_atoms=n_atoms[good].astype(np.int32),
        lattices=cells[good],
        numbers=z[atom_good].astype(np.int16),
        frac_coords=frac,
        targets=np.full((int(good.sum()), 1), np.nan),  # predictions need no targets
        target_names=["unknown"],
        units=[""],
    )
    return dataset, _in_order(invalid, uuids)


def _in_order(invalid: dict[str, str], uuids: list[str]) -> dict[str, str]:
    return {u: invalid[u] for u in uuids if u in invalid} if invalid else invalid


def _reason(sid: str, attributes: dict[str, t.Any]) -> str:
    """Why a structure the one-pass checks flagged is invalid (those checks are
    :func:`crystal_from_attributes`'s, so it names the reason)."""
    found = _careful(sid, attributes)
    return found if isinstance(found, str) else f"{sid} failed a structure check"


def _careful(sid: str, attributes: dict[str, t.Any]) -> Crystal | str:
    """:func:`crystal_from_attributes`, or the reason the structure is invalid."""
    try:
        return crystal_from_attributes(sid, attributes)
    except InvalidStructureError as error:
        return str(error)
    except (KeyError, TypeError, ValueError) as error:
        return str(
            InvalidStructureError(
                sid, f"has malformed StructureData attributes ({error!r})", "store it again"
            )
        )


def _column_units(
    names: list[str], units: list[str], basis: list[str], has_std: bool
) -> list[tuple[str, str]]:
    columns = [(c, "") for c in ("position", "uuid", "pk", "label", "shard", "status", "reason")]
    columns += [("cell_atoms", ""), ("basis_atoms", "")]
    for name, unit, kind in zip(names, units, basis, strict=True):
        per = f"{unit} (per {kind})" if kind != "intensive" else unit
        columns.append((name, per))
        if has_std:
            columns.append((f"{name}_std", per))
        if kind != "intensive":
            columns += [(f"{name}_per_atom", f"{unit} (per atom)")]
            if has_std:
                columns += [(f"{name}_per_atom_std", f"{unit} (per atom)")]
    return columns


@calcfunction
def screening_table(criterion: orm.Dict, context: orm.Dict, **shards: orm.Data) -> dict[str, orm.Data]:
    """One table of a screen: every structure in input order, its prediction (or why there is none),
    and the criterion's selection.

    ``shards`` holds, for shard ``K`` (4 digits), ``structures_K`` (the ``structures`` output of
    :func:`screen_shard`) and, for a shard whose ``cgcnn.predict`` job succeeded, ``predictions_K``,
    ``skipped_K`` and, for an ensemble, ``out_of_domain_K`` (that job's outputs). ``context`` gives
    ``model`` (uuid, label), ``failed`` (shard -> reason), ``shards`` (per shard its calculations)
    and ``group`` (label, uuid of the group of selected structures).

    Outputs ``table`` (``SinglefileData`` ``screening.csv``, see :func:`read_screening_table`) and
    ``summary`` (``Dict``).
    """
    return _screening_table(criterion, context, shards)


@without_gc
def _screening_table(
    criterion: orm.Dict, context: orm.Dict, shards: dict[str, orm.Data]
) -> dict[str, orm.Data]:
    spec = Criterion.from_dict(criterion.get_dict())
    info = context.get_dict()
    failed = {int(k): v for k, v in info.get("failed", {}).items()}
    indices = sorted(int(key.split("_")[1]) for key in shards if key.startswith("structures_"))
    names: list[str] = list(info["targets"])
    units: list[str] = list(info["units"])
    basis: list[str] = list(info.get("basis") or ["intensive"] * len(names))
    has_std = bool(info.get("ensemble"))
    # column by column (a screen may hold 10^6 structures): text in lists, numbers in arrays
    text: dict[str, list[str]] = {key: [] for key in ("uuid", "label", "status", "reason", "out_of_domain")}
    pks: list[int] = []
    shard_of: list[int] = []
    cell_atoms: list[int] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("values", "std", "values_per_atom", "std_per_atom")}
    basis_parts: list[np.ndarray] = []
    for k in indices:
        record = shard_record(t.cast("orm.ArrayData | orm.Dict", shards[f"structures_{k:04d}"]))
        n = len(record["uuids"])
        invalid = record["invalid"]
        predictions = t.cast("orm.ArrayData | None", shards.get(f"predictions_{k:04d}"))
        skipped = t.cast(orm.Dict, shards[f"skipped_{k:04d}"]).get_dict() if predictions is not None else {}
        key = f"out_of_domain_{k:04d}"
        flagged = t.cast(orm.Dict, shards[key]).get_dict() if key in shards else {}
        rows = np.full(n, -1)  # each structure's row in the job's arrays, -1 if none
        if predictions is not None:
            if predictions.base.attributes.get("target_names") != names:
                found_names = predictions.base.attributes.get("target_names")
                raise ValueError(f"shard {k}: predictions of {found_names}, not {names}")
            found = {str(sid): row for row, sid in enumerate(predictions.get_array("ids"))}
            rows = np.array([found.get(uuid, -1) for uuid in record["uuids"]], dtype=int)
        for j, uuid in enumerate(record["uuids"]):
            state, reason = "predicted", ""
            if uuid in invalid:
                state, reason = "invalid", invalid[uuid]
            elif k in failed:
                state, reason = "failed", failed[k]
            elif rows[j] < 0:
                state, reason = "invalid", skipped.get(uuid, "not in the predictions")
            text["status"].append(state)
            text["reason"].append(reason)
            text["out_of_domain"].append(flagged.get(uuid, ""))
        text["uuid"] += record["uuids"]
        text["label"] += record["labels"]
        pks += record["pks"]
        shard_of += [k] * n
        cell_atoms += record["atoms"]
        keep = rows >= 0
        for name, part in parts.items():
            block = np.full((n, len(names)), np.nan)
            if predictions is not None and name in predictions.get_arraynames():
                block[keep] = predictions.get_array(name)[rows[keep]]
            part.append(block)
        atoms = np.asarray(record["atoms"], dtype=np.int64)
        if predictions is not None and "basis_atoms" in predictions.get_arraynames():
            atoms = atoms.copy()
            atoms[keep] = predictions.get_array("basis_atoms")[rows[keep]]
        basis_parts.append(atoms)
    width = len(names)
    arrays = {k: np.concatenate(v) if v else np.zeros((0, width)) for k, v in parts.items()}
    basis_atoms = np.concatenate(basis_parts) if basis_parts else np.zeros(0, dtype=np.int64)
    total = len(pks)

    column = names.index(spec.target)
    values, std = arrays["values"][:, column], arrays["std"][:, column] if has_std else None
    # per atom of the cell the value is for: the basis cell of an ensemble's extensive target
    atoms_of_value = basis_atoms if basis[column] != "intensive" else np.asarray(cell_atoms)
    score = spec.score(values, atoms_of_value) if total else values
    ranked = spec.select(values, std, atoms_of_value) if total else np.zeros(0, dtype=int)
    rank = np.zeros(total, dtype=int)
    rank[ranked] = np.arange(1, len(ranked) + 1)

    columns = [
        *_column_units(names, units, basis, has_std),
        ("out_of_domain", ""),
        ("score", _score_unit(spec, units[column], basis[column])),
        ("selected", ""),
        ("rank", ""),
    ]
    numbers: list[tuple[str, np.ndarray, int]] = []  # numeric columns: (name, array, target column)
    for c, name in enumerate(names):
        numbers.append((name, arrays["values"], c))
        if has_std:
            numbers.append((f"{name}_std", arrays["std"], c))
        if basis[c] != "intensive":
            numbers.append((f"{name}_per_atom", arrays["values_per_atom"], c))
            if has_std:
                numbers.append((f"{name}_per_atom_std", arrays["std_per_atom"], c))
    handle = io.StringIO()
    handle.write(f"# cgcnn.screen table; model: {info['model']['label']}\n")
    handle.write(f"# criterion: {json.dumps(spec.to_dict(), sort_keys=True)}\n")
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow([c for c, _ in columns])
    writer.writerow(["# units", *[u for _, u in columns[1:]]])
    # column by column, then the rows in one call: 10^5 rows of Python lists cost seconds
    formatted = [_numbers(array[:, c]) for _, array, c in numbers]
    writer.writerows(
        zip(
            range(total),
            text["uuid"],
            pks,
            text["label"],
            shard_of,
            text["status"],
            text["reason"],
            cell_atoms,
            basis_atoms.tolist(),
            *formatted,
            text["out_of_domain"],
            _numbers(np.asarray(score, dtype=float)),
            ["true" if r else "false" for r in rank.tolist()],
            [r or "" for r in rank.tolist()],
            strict=True,
        )
    )
    table = orm.SinglefileData(io.BytesIO(handle.getvalue().encode()), filename=TABLE_FILENAME)
    table.description = f"cgcnn.screen: {total} structures, {len(ranked)} selected ({spec.target})"

    status = text["status"]
    invalid_rows = [(text["uuid"][k], text["reason"][k]) for k in range(total) if status[k] == "invalid"]
    spread = arrays["std"][:, column] if has_std else np.full(total, np.nan)
    spread = spec.score(spread, atoms_of_value) if spec.per_atom and total else spread
    order = np.argsort(-np.where(np.isfinite(spread), spread, -np.inf), kind="stable")
    uncertain = [int(k) for k in order[:SUMMARY_UNCERTAIN] if np.isfinite(spread[k])]
    summary = {
        "structures": total,
        "predicted": status.count("predicted"),
        "invalid": status.count("invalid"),
        "in_failed_shards": status.count("failed"),
        "selected": len(ranked),
        "out_of_domain": sum(bool(reason) for reason in text["out_of_domain"]),
        "invalid_reasons": dict(invalid_rows[:SUMMARY_INVALID]),
        "invalid_listed": min(len(invalid_rows), SUMMARY_INVALID),
        "failed_shards": {str(k): v for k, v in sorted(failed.items())},
        "shards": info.get("shards", []),
        "criterion": spec.to_dict(),
        "model": info["model"],
        "group": info.get("group", {}),
        # pks, best first: the group's members; the largest spreads (as the criterion compares them)
        "selected_pks": [pks[k] for k in ranked],
        "most_uncertain_pks": [pks[k] for k in uncertain],
    }
    return {"table": table, "summary": orm.Dict(summary)}


def _score_unit(spec: Criterion, unit: str, basis: str) -> str:
    if spec.per_atom:
        return f"{unit} (per atom)"
    return f"{unit} (per {basis})" if basis != "intensive" else unit


def _numbers(values: np.ndarray) -> list[str]:
    """Each value with 8 significant digits, NaN as empty."""
    return ["" if v != v else f"{v:.8g}" for v in values.tolist()]


def read_screening_table(
    source: orm.SinglefileData | str,
) -> tuple[dict[str, t.Any], dict[str, str], list[dict[str, t.Any]]]:
    """Read a screen's table (the node, or the CSV's text): ``meta`` (``model``, ``criterion``), the
    unit of every column, and one dict per structure in input order (numbers as numbers, a missing
    value as NaN or None, ``selected`` as bool)."""
    text = source.get_content(mode="r") if isinstance(source, orm.SinglefileData) else source
    lines = str(text).splitlines()
    meta: dict[str, t.Any] = {}
    while lines and lines[0].startswith("# ") and not lines[0].startswith("# units"):
        line = lines.pop(0)
        if line.startswith("# criterion: "):
            meta["criterion"] = json.loads(line[len("# criterion: ") :])
        elif "model: " in line:
            meta["model"] = line.split("model: ", 1)[1]
    reader = list(csv.reader(lines))
    if len(reader) < 2 or reader[1][:1] != ["# units"]:
        raise ValueError("not a cgcnn.screen table: no '# units' row under the header")
    header = reader[0]
    units = dict(zip(header, ["", *reader[1][1:]], strict=True))
    rows = []
    for raw in reader[2:]:
        row: dict[str, t.Any] = {}
        for name, value in zip(header, raw, strict=True):
            if name in _TEXT:
                row[name] = value
            elif name == "selected":
                row[name] = value == "true"
            elif name in _INT:
                row[name] = int(value) if value else None
            else:
                row[name] = float(value) if value else math.nan
        rows.append(row)
    return meta, units, rows
