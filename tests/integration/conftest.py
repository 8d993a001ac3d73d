from tests.aiida_fixtures import *  # noqa: F403
