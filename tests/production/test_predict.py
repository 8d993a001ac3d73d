"""The prediction CalcJob, its calcfunction and the provenance queries on the production profile: a test
of tests/aiida, re-run here on PostgreSQL + RabbitMQ."""

import pytest

from tests.aiida.test_predict import (  # noqa: F401  (collected here, on this folder's profile)
    test_predict_calcjob_calcfunction_and_provenance_query,
    trained,
)

pytestmark = pytest.mark.production
