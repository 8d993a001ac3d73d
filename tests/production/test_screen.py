"""The screen work chain on the production profile. On SQLite it reads a group's rows and a shard's
structures with plain SELECTs; on PostgreSQL both go through QueryBuilder: the re-run tests of
tests/aiida_screen and the test below exercise that path."""

import pytest
from aiida import orm
from ase.build import bulk

from aiida_cgcnn.calculations.functions.screen import _sqlite_session, screen_shard_by_uuid, shard_record
from aiida_cgcnn.data.dataset import CrystalDatasetData
from tests.aiida_screen.conftest import member_checkpoints, members  # noqa: F401
from tests.aiida_screen.test_screen import (  # noqa: F401  (collected here, on this folder's profile)
    test_three_shards_one_table_in_input_order_with_selection_and_provenance,
)
from tests.aiida_screen.test_shard_dataset import test_group_rows_are_its_structures_by_pk  # noqa: F401

pytestmark = pytest.mark.production


def test_a_shard_by_uuid_reads_its_structures_through_querybuilder():
    """``screen_shard_by_uuid`` (the unlinked shards of large screens) on PostgreSQL: no SQLite session,
    so QueryBuilder reads the rows; every structure comes back in the order asked, with its pk, label and
    atom count, and a UUID that is no StructureData is refused, naming it."""
    assert _sqlite_session() is None
    nodes = [orm.StructureData(ase=bulk(e, cubic=True)).store() for e in ("Cu", "Si", "Al")]
    nodes[1].label = "silicon"
    order = [nodes[2], nodes[0], nodes[1]]
    outputs = screen_shard_by_uuid(uuids=orm.List([n.uuid for n in order]))
    record = shard_record(outputs["structures"])
    assert record["uuids"] == [n.uuid for n in order] and record["pks"] == [n.pk for n in order]
    assert record["labels"] == ["", "", "silicon"] and record["atoms"] == [4, 4, 8]
    assert record["invalid"] == {}
    assert outputs["dataset"].named_structures == [n.uuid for n in order]
    # the LIKE filter on PostgreSQL's JSONB finds the shard by any of its structures, and only it
    query = orm.QueryBuilder().append(
        CrystalDatasetData, filters=CrystalDatasetData.naming([nodes[0].uuid]), project="id"
    )
    assert query.all(flat=True) == [outputs["dataset"].pk]

    other = orm.Int(1).store()
    with pytest.raises(ValueError, match=f"no stored StructureData, e.g. {other.uuid}"):
        screen_shard_by_uuid(uuids=orm.List([nodes[0].uuid, other.uuid]))
