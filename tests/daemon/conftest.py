import pytest

from tests.aiida_fixtures import *  # noqa: F403


@pytest.fixture(scope="session")
def aiida_profile(aiida_config, aiida_profile_factory):
    """A temporary profile with aiida-core's built-in ZeroMQ broker, so the daemon runs with no service."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        # a loaded 2-core machine answers the daemon's controller slower than the default 2 s
        aiida_config.set_option("daemon.timeout", 60, scope=profile.name)
        yield profile
