"""Messages users read name values as Python writes them, never as NumPy reprs (``np.False_``)."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_cgcnn.errors import InvalidStructureError, plain
from aiida_cgcnn.structures import to_crystal


def test_plain_turns_numpy_values_into_python_ones():
    assert plain(np.array([True, False])) == [True, False]
    assert plain((np.int64(3), [np.float64(0.5)], {"a": np.bool_(True)})) == (3, [0.5], {"a": True})
    assert repr(plain(np.eye(2))) == "[[1.0, 0.0], [0.0, 1.0]]"


def test_a_molecule_in_ase_names_its_pbc_as_plain_booleans():
    from ase.build import molecule

    with pytest.raises(InvalidStructureError) as caught:
        to_crystal(molecule("H2O"), "water")
    assert "pbc=[False, False, False]" in str(caught.value)
    assert "np." not in str(caught.value)


def test_phonon_settings_name_a_bad_matrix_without_numpy_reprs():
    from aiida_cgcnn.phonons.errors import PhononInputError
    from aiida_cgcnn.phonons.settings import PhononSettings

    for kwargs in (
        {"supercell_matrix": np.array([[1, 0], [0, 1]])},
        {"supercell_matrix": np.zeros((3, 3), dtype=np.int64)},
        {"primitive_matrix": np.eye(2)},
        {"mesh": np.array([0, 1, 1])},
    ):
        with pytest.raises(PhononInputError) as caught:
            PhononSettings(**kwargs)
        message = str(caught.value)
        assert "np." not in message and "array(" not in message, message
