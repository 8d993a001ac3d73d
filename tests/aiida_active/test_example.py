"""``examples/active_learning_emt.py``: its pool is made of primitive cells (the cells the references are
per mole of, so the cell predicted is the cell computed) that EMT can compute, and it runs end to end
as a user runs it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_verdi_run_on_a_fresh_presto_profile(fresh_presto):
    """``verdi presto`` on an empty AiiDA configuration, then ``verdi run`` of the example (smaller:
    one round of two references, two members of two epochs)."""
    env, work = fresh_presto
    arguments = ["--rounds", "1", "--per-round", "2", "--members", "2", "--epochs", "2"]
    run = subprocess.run(
        [str(Path(sys.executable).parent / "verdi"), "run", str(EXAMPLE), "--", *arguments],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "1. A pool of 147 crystals" in output
    assert "ActiveLearningWorkChain<" in output and "budget spent: 1 rounds" in output
    # the seed batch (4) and one round (2): two rows of the learning curve, with numbers
    rows = [
        line.split() for line in output.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 6
    ]
    assert [(r[0], r[1], r[2]) for r in rows] == [("0", "4", "4"), ("1", "6", "6")]
    assert all(float(value) > 0 for r in rows for value in r[3:])
    png = work / "runs" / "active-learning" / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        (work / "runs" / "active-learning" / "learning_curve.csv")
        .read_text()
        .startswith("round,n_references")
    )
