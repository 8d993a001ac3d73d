"""The hyperparameter search work chain's fixtures: the shared AiiDA ones (real profile, real code)."""

from tests.aiida_fixtures import *  # noqa: F403
