"""A shard's dataset is packed from the structures' attributes in one pass over whole arrays: it must
equal the structure-by-structure path (:func:`crystal_from_attributes`) crystal for crystal, and name
every invalid structure with the same reason, in input order."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase import Atoms
from ase.build import bulk

from aiida_cgcnn.calculations.functions.screen import _pack, crystal_from_attributes
from aiida_cgcnn.errors import InvalidStructureError


def _attributes(structure: orm.StructureData) -> dict:
    return dict(structure.base.attributes.all)


def _mixed(rng: np.random.Generator) -> list[tuple[str, dict]]:
    """Valid crystals of 1 to 16 atoms (rattled, strained, two kinds of one element) among invalid
    structures of every kind the checks know."""
    valid = []
    for k in range(30):
        atoms = bulk("NaCl", "rocksalt", a=5.6) if k % 4 == 1 else bulk(["Cu", "", "Si", "Fe"][k % 4])
        atoms = atoms.repeat((1 + k % 2, 1, 1 + k % 3))
        atoms.rattle(0.05, seed=k)
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        valid.append(orm.StructureData(ase=atoms))
    two_kinds = orm.StructureData(cell=np.eye(3) * 3.0)
    two_kinds.append_atom(symbols="Fe", position=(0, 0, 0), name="Fe1")
    two_kinds.append_atom(symbols="Fe", position=(1.5, 1.5, 1.5), name="Fe2")
    valid.append(two_kinds)

    slab = orm.StructureData(ase=bulk("Cu"))
    slab.pbc = (True, True, False)
    alloy = orm.StructureData(cell=np.eye(3) * 3.0)
    alloy.append_atom(symbols=("Cu", "Au"), weights=(0.5, 0.5), position=(0, 0, 0))
    dummy = orm.StructureData(cell=np.eye(3) * 3.0)
    dummy.append_atom(symbols="X", position=(0, 0, 0))
    argon = orm.StructureData(ase=bulk("Ar", "fcc", a=5.3))
    empty = orm.StructureData(cell=np.eye(3) * 3.0)
    flat = orm.StructureData(ase=Atoms("Cu", cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True))
    nan = orm.StructureData(ase=bulk("Cu"))
    nan_attributes = _attributes(nan)
    nan_attributes["sites"][0]["position"] = [float("nan"), 0.0, 0.0]
    invalid = [_attributes(s) for s in (slab, alloy, dummy, argon, empty, flat)] + [nan_attributes]
    records = [_attributes(s) for s in valid]
    for position, attributes in zip((0, 5, 11, 12, 20, 29, 31), invalid, strict=True):
        records.insert(position, attributes)
    return [(f"id-{k:03d}", attributes) for k, attributes in enumerate(records)]


def test_packed_shard_equals_the_structure_by_structure_path(aiida_profile):
    records = _mixed(np.random.default_rng(0))
    ids = [sid for sid, _ in records]
    dataset, invalid = _pack(ids, [a for _, a in records])

    expected, reasons = [], {}
    for sid, attributes in records:
        try:
            expected.append(crystal_from_attributes(sid, attributes))
        except InvalidStructureError as error:
            reasons[sid] = str(error)
    assert len(reasons) == 7 and list(invalid) == list(reasons)  # every invalid one, in input order
    assert invalid == reasons
    assert dataset is not None and list(dataset.ids) == [c.id for c in expected]
    assert dataset.num_atoms.tolist() == [c.num_atoms for c in expected]
    np.testing.assert_allclose(dataset.lattices, np.stack([c.lattice for c in expected]), atol=0, rtol=0)
    assert dataset.numbers.tolist() == np.concatenate([c.numbers for c in expected]).tolist()
    np.testing.assert_allclose(
        dataset.frac_coords, np.concatenate([c.frac_coords for c in expected]), rtol=0, atol=1e-12
    )
    assert dataset.target_names == ["unknown"] and np.isnan(dataset.targets).all()


@pytest.mark.parametrize("count", [0, 3])
def test_a_shard_of_invalid_structures_has_no_dataset(aiida_profile, count):
    argon = _attributes(orm.StructureData(ase=bulk("Ar", "fcc", a=5.3)))
    dataset, invalid = _pack([f"ar-{k}" for k in range(count)], [argon] * count)
    assert dataset is None and list(invalid) == [f"ar-{k}" for k in range(count)]
    assert all("noble-gas" in reason for reason in invalid.values())


def test_plain_select_reads_what_querybuilder_reads(aiida_profile):
    """The SQLite reader (one SELECT per chunk, no ORM conversion) returns what QueryBuilder returns,
    and neither takes a node that is no StructureData."""
    from aiida.manage import get_manager

    from aiida_cgcnn.calculations.functions.screen import (
        _structure_records,
        _structure_records_querybuilder,
    )

    assert type(get_manager().get_profile_storage()).__name__ == "SqliteDosStorage"  # the fast path runs
    nodes = [orm.StructureData(ase=bulk(e)).store() for e in ("Cu", "Si", "Fe")]
    nodes[1].label = "silicon"
    other = orm.Int(3).store()
    uuids = [n.uuid for n in nodes] + [other.uuid, "00000000-0000-4000-8000-000000000000"]
    fast, careful = _structure_records(uuids), _structure_records_querybuilder(uuids)
    assert fast == careful and set(fast) == {n.uuid for n in nodes}
    assert fast[nodes[1].uuid][1:3] == (nodes[1].pk, "silicon")


def test_group_rows_are_its_structures_by_pk(aiida_profile):
    """The plain SELECT of a group's members returns its StructureData by pk, leaves other nodes out,
    and agrees with QueryBuilder (which it falls back to when another Data type is a member)."""
    from aiida_cgcnn.calculations.functions.screen import group_structure_rows

    group = orm.Group(label="rows-by-pk").store()
    nodes = [orm.StructureData(ase=bulk(e)).store() for e in ("Cu", "Si", "Fe", "Al")]
    group.add_nodes([nodes[2], nodes[0], nodes[3], nodes[1]])
    expected = [(n.pk, n.uuid) for n in nodes]
    assert group_structure_rows(group) == expected
    group.add_nodes([orm.Int(1).store()])  # another Data type: QueryBuilder decides
    assert group_structure_rows(group) == expected
    assert group_structure_rows(orm.Group(label="empty-rows").store()) == []


def test_a_shard_by_uuid_takes_a_list_or_an_array(aiida_profile):
    """The screen hands a shard's UUIDs over as an array; a List gives the same shard: the structures
    in the order asked with their pks, labels and atom counts, as arrays, and the same dataset."""
    from aiida_cgcnn.calculations.functions.screen import screen_shard_by_uuid, shard_record, shard_uuids_node

    nodes = [orm.StructureData(ase=bulk(e, cubic=True)).store() for e in ("Cu", "Si", "Al")]
    nodes[1].label = "silicon"
    order = [n.uuid for n in (nodes[2], nodes[0], nodes[1])]
    array = shard_uuids_node(order)
    by_list, by_array = screen_shard_by_uuid(uuids=orm.List(order)), screen_shard_by_uuid(uuids=array)
    assert isinstance(by_array["structures"], orm.ArrayData)
    record = shard_record(by_array["structures"])
    assert record == shard_record(by_list["structures"])
    assert record["uuids"] == order and record["labels"] == ["", "", "silicon"]
    assert record["pks"] == [orm.load_node(u).pk for u in order] and record["atoms"] == [4, 4, 8]
    assert by_array["dataset"].sha256 == by_list["dataset"].sha256
    assert by_array["dataset"].named_structures == order


def test_datasets_are_found_by_the_structures_they_name(aiida_profile):
    """A shard's dataset names its structures in one string attribute; a dataset of an older screen
    names them in a list attribute. The filter finds each by any of its structures and no other."""
    from aiida_cgcnn.calculations.functions.screen import screen_shard_by_uuid
    from aiida_cgcnn.data.dataset import CrystalDatasetData

    def dataset(symbol: str) -> CrystalDatasetData:
        structure = orm.StructureData(ase=bulk(symbol, cubic=True)).store()
        return screen_shard_by_uuid(uuids=orm.List([structure.uuid]))["dataset"]

    new, other = dataset("Cu"), dataset("Al")
    old = CrystalDatasetData.from_dataset(new.get_dataset())
    named = [orm.StructureData(ase=bulk("Si", cubic=True)).store().uuid for _ in range(3)]
    old.base.attributes.set("structure_uuids", named)  # the list form
    old.store()
    assert old.named_structures == named and other.named_structures != new.named_structures

    def found(uuids: list[str]) -> set[int]:
        query = orm.QueryBuilder().append(
            CrystalDatasetData, filters=CrystalDatasetData.naming(uuids), project="id"
        )
        return set(query.all(flat=True)) & {new.pk, other.pk, old.pk}

    assert found(new.named_structures) == {new.pk}
    assert found([named[1]]) == {old.pk}
    assert found([named[2], *other.named_structures]) == {old.pk, other.pk}
    assert found([]) == set()
    with pytest.raises(ValueError, match="is not a UUID"):
        CrystalDatasetData.naming(["%"])
