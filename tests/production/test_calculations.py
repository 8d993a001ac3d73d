"""The training and prediction CalcJobs and the restart work chain (a handler-driven restart: the
walltime's resume from the last checkpoint) on the production profile: the tests of tests/aiida, re-run
here on PostgreSQL + RabbitMQ."""

import pytest

from tests.aiida.test_predict import (  # noqa: F401  (collected here, on this folder's profile)
    test_predict_calcjob_calcfunction_and_provenance_query,
    trained,
)
from tests.aiida.test_train_calculation import test_training_calcjob_trains_and_parses  # noqa: F401
from tests.aiida.test_workchain import test_walltime_resume_reaches_the_uninterrupted_result  # noqa: F401

pytestmark = pytest.mark.production
