"""Fixtures of the pretrained-ensemble tests: the shared AiiDA fixtures and SrTiO3-like perovskites."""

from __future__ import annotations

import pytest

from tests.aiida_fixtures import *  # noqa: F403
from tests.builders import perovskite  # noqa: F401  (the tests of this folder import it from here)

MODEL = "perovskite-formation"


@pytest.fixture
def installed_model():
    from aiida_cgcnn.pretrained.registry import available

    if MODEL not in available():
        pytest.skip(f"the pretrained model {MODEL!r} is not installed")
    return MODEL
