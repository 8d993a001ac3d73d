"""The training CalcJob and the restart work chain (a handler-driven restart: a diverged loss, then the
same training with the learning rate lowered) on the production profile: tests of tests/aiida, re-run
here on PostgreSQL + RabbitMQ."""

import pytest

from tests.aiida.test_train_calculation import (  # noqa: F401  (collected here, on this folder's profile)
    test_training_calcjob_trains_and_parses,
)
from tests.aiida.test_workchain import test_diverged_loss_lowers_the_learning_rate  # noqa: F401

pytestmark = pytest.mark.production
