"""``examples/active_learning_emt.py``: its pool is made of primitive cells (the cells the references are
per mole of, so the cell predicted is the cell computed) that EMT can compute."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import spglib
from ase.calculators.emt import parameters as emt_parameters

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "active_learning_emt.py"


def _example():
    spec = importlib.util.spec_from_file_location("active_learning_emt_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pool_is_primitive_cells_of_emt_elements(aiida_profile):
    example = _example()
    pool = example.pool()
    assert len(pool) == 3 * (7 + 7 * 6)  # metals and ordered alloys at three strains
    assert all(label.replace("_", "").isalnum() for label in pool)
    for label, structure in pool.items():
        atoms = structure.get_ase()
        assert set(atoms.get_chemical_symbols()) <= set(emt_parameters), label
        cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
        primitive = spglib.standardize_cell(cell, to_primitive=True, symprec=1e-5)
        assert len(primitive[2]) == len(atoms), label
    assert {len(s.sites) for s in pool.values()} == {1, 4}
