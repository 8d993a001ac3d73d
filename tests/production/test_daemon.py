"""The daemon on the production profile: a training work chain submitted to RabbitMQ, run by a daemon
worker (the test of tests/daemon, re-run here)."""

import pytest

from tests.daemon.test_daemon import test_training_work_chain_through_the_daemon  # noqa: F401

pytestmark = pytest.mark.production
