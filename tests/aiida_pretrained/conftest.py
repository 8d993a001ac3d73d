"""Fixtures of the pretrained-ensemble tests: the shared AiiDA fixtures and SrTiO3-like perovskites."""

from __future__ import annotations

import pytest

from tests.aiida_fixtures import *  # noqa: F403

MODEL = "perovskite-formation"


def perovskite(a: str = "Sr", b: str = "Ti", x: str = "O", lattice: float = 3.9):
    """A cubic ABX3 perovskite, 5 atoms (pymatgen)."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.cubic(lattice),
        [a, b, x, x, x],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


@pytest.fixture
def installed_model():
    from aiida_cgcnn.pretrained.registry import available

    if MODEL not in available():
        pytest.skip(f"the pretrained model {MODEL!r} is not installed")
    return MODEL
