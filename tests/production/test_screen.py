"""The screen work chain on the production profile. On SQLite it reads a group's rows and a shard's
structures with plain SELECTs; on PostgreSQL both go through QueryBuilder, which these re-run tests of
tests/aiida_screen exercise."""

import pytest

from tests.aiida_screen.conftest import member_checkpoints, members  # noqa: F401
from tests.aiida_screen.test_screen import (  # noqa: F401  (collected here, on this folder's profile)
    test_three_shards_one_table_in_input_order_with_selection_and_provenance,
)
from tests.aiida_screen.test_shard_dataset import test_group_rows_are_its_structures_by_pk  # noqa: F401

pytestmark = pytest.mark.production
