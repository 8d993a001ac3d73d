"""The phonon comparison work chain on the production profile: a test of tests/aiida_phonons re-run here
on PostgreSQL + RabbitMQ."""

import pytest

from tests.aiida_phonons.conftest import checkpoints, models  # noqa: F401
from tests.aiida_phonons.test_phonon_comparison import (  # noqa: F401  (collected here, on this folder's profile)
    test_two_models_and_a_failed_crystal,
)

pytestmark = pytest.mark.production
