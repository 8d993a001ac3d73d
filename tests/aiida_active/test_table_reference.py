"""``cgcnn.table_reference``: phonon references read from a table, found by structure matching, with
the outputs of ``cgcnn.phonon_reference`` and the table's sha256 in the provenance."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from aiida_cgcnn.calculations.functions.active_learning import formula_key
from aiida_cgcnn.workflows.table_reference import TableReferenceWorkChain


def _row_structure(row: dict) -> Structure:
    return Structure(Lattice(row["lattice"]), row["species"], row["frac_coords"])


def _disguised(structure: Structure, seed: int) -> Structure:
    """A 2x1x2 supercell of ``structure``, rotated by 33° about [1, 1, 0], its atoms shuffled."""
    bigger = structure.copy()
    bigger.make_supercell([2, 1, 2])
    bigger.apply_operation(SymmOp.from_axis_angle_and_translation([1, 1, 0], 33.0))
    order = np.random.default_rng(seed).permutation(len(bigger))
    return Structure.from_sites([bigger[int(k)] for k in order])


def _run(structure, label: str = "", **inputs):
    node = orm.StructureData(pymatgen=structure) if isinstance(structure, Structure) else structure
    node.label = label
    return run_get_node(TableReferenceWorkChain, structure=node, **inputs)


def _write_table(path, rows) -> str:
    with gzip.open(path, "wt") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


@pytest.fixture
def small_table(tmp_path):
    """Two rows with values over 300 and 600 K (lists, the layout of our own phonon records)."""
    rows = []
    for k, (element, a) in enumerate((("Cu", 3.59), ("Ni", 3.52))):
        cell = bulk(element, "fcc", a=a)
        rows.append(
            {
                "name": f"{element}-fcc",
                "lattice": cell.cell.tolist(),
                "species": [element],
                "frac_coords": cell.get_scaled_positions().tolist(),
                "temperatures_K": [300.0, 600.0],
                "U_kJmol": [7.0 + k, 14.0 + k],
                "Cv_JKmol": [23.0 + k, 24.0 + k],
                "S_JKmol": [30.0 + k, 45.0 + k],
                "F_kJmol": [-2.0 - k, -13.0 - k],
                "min_freq_THz": -0.01 * (k + 1),
            }
        )
    return _write_table(tmp_path / "table.jsonl.gz", rows), rows


def test_entry_point_and_a_small_table_with_two_temperatures(aiida_profile, small_table):
    assert WorkflowFactory("cgcnn.table_reference") is TableReferenceWorkChain
    path, _ = small_table
    conventional = bulk("Ni", "fcc", a=3.52, cubic=True)  # 4 atoms: the table holds the 1-atom cell
    results, node = _run(
        orm.StructureData(ase=conventional), table=orm.Str(path), temperatures=orm.List([600.0, 300.0])
    )
    assert node.is_finished_ok, node.exit_message
    record = results["thermal_properties"].get_dict()
    assert record["temperatures_K"] == [600.0, 300.0]
    assert record["U_kJmol"] == [15.0, 8.0] and record["Cv_JKmol"] == [25.0, 24.0]
    assert record["S_JKmol"] == [46.0, 31.0] and record["F_kJmol"] == [-14.0, -3.0]
    assert record["natoms"] == 1 and record["formula"] == "Ni" and record["stable"] is True
    assert record["per"] == "mole of primitive cells" and record["n_qpoints"] is None
    assert record["source"]["id"] == "Ni-fcc" and record["source"]["row"] == 1
    assert record["source"]["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert len(results["primitive_structure"].sites) == 1

    # 450 K lies between the tabulated temperatures: not interpolated, an exit code naming them
    _, node = _run(orm.StructureData(ase=conventional), table=orm.Str(path), temperatures=orm.List([450.0]))
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_TEMPERATURE_NOT_TABULATED.status
    assert "450 K is not tabulated" in node.exit_message and "gives 300, 600 K only" in node.exit_message
    # Pd is not in it; Cu at another volume is another crystal
    _, node = _run(orm.StructureData(ase=bulk("Pd", "fcc", a=3.94)), label="Pd", table=orm.Str(path))
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_NOT_IN_TABLE.status
    assert "'Pd' (Pd) is not in the table" in node.exit_message and "reduced formula" in node.exit_message
    _, node = _run(orm.StructureData(ase=bulk("Cu", "fcc", a=3.95)), label="Cu_strained", table=orm.Str(path))
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_NOT_IN_TABLE.status
    assert "none of the 1 row(s) of that formula (Cu-fcc) matches" in node.exit_message
    # a table that is not there is refused at the door
    with pytest.raises(ValueError, match="does not exist"):
        _run(orm.StructureData(ase=conventional), table=orm.Str(str(small_table[0]) + ".missing"))


PHONONDB = ("mp-1000", "mp-10009", "mp-149")  # BaTe (2 atoms), GaTe (8 atoms, two GaTe rows), Si


@pytest.mark.data
def test_phonondb_rows_are_found_in_any_cell_and_returned_exactly(aiida_profile, phonondb_table):
    path, table = phonondb_table
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for k, mp_id in enumerate(PHONONDB):
        row = table[mp_id]
        for how, structure, label in (
            ("label hint", _row_structure(row), mp_id.replace("-", "_")),
            ("disguised", _disguised(_row_structure(row), seed=k), ""),
        ):
            results, node = _run(structure, label=label)
            assert node.is_finished_ok, (mp_id, how, node.exit_message)
            record = results["thermal_properties"].get_dict()
            # the table's numbers, per mole of the table's primitive cell (a Dict keeps 14 digits)
            for key in ("U_kJmol", "Cv_JKmol", "S_JKmol", "F_kJmol"):
                assert record[key] == [pytest.approx(row[key], rel=1e-13, abs=0)], (mp_id, how, key)
            assert record["min_freq_THz"] == pytest.approx(row["min_freq_THz"], rel=1e-13, abs=0)
            assert record["natoms"] == row["natoms"]
            assert record["nac"] == row["has_born"] and record["stable"] is True
            assert record["source"]["id"] == mp_id and record["source"]["sha256"] == digest
            assert record["source"]["match"].startswith("label" if label else "structure match"), how
            primitive = results["primitive_structure"]
            np.testing.assert_allclose(primitive.cell, row["lattice"], atol=1e-8)
            assert [site.kind_name for site in primitive.sites] == row["species"]
            # the provenance: a calcfunction read the table for this structure
            creator = results["thermal_properties"].creator
            assert creator.process_label == "table_thermal_properties"
            assert creator.inputs.structure.uuid == node.inputs.structure.uuid
            assert creator.inputs.table.value == str(path)


@pytest.mark.data
def test_phonondb_misses_get_exit_codes(aiida_profile, phonondb_table):
    _, table = phonondb_table
    assert formula_key(["Au", "Cu", "Cu", "Cu"]) == "Au1Cu3"
    alloy = bulk("Cu", "fcc", a=3.7, cubic=True)
    alloy.symbols[0] = "Au"
    _, node = _run(orm.StructureData(ase=alloy), label="AuCu3")
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_NOT_IN_TABLE.status
    assert "structure 'AuCu3' (Cu3Au) is not in the table phonondb-300K.jsonl.gz" in node.exit_message
    # the right formula, 8 % longer; its mp id as label does not make it the tabulated crystal
    strained = _row_structure(table["mp-149"])
    strained.scale_lattice(strained.volume * 1.08**3)
    _, node = _run(strained, label="mp-149")
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_NOT_IN_TABLE.status
    assert "matches it within the tolerances" in node.exit_message
    # ... unless the lattice tolerance allows it
    results, node = _run(strained, label="mp-149", match=orm.Dict({"ltol": 0.1}))
    assert node.is_finished_ok and results["thermal_properties"]["source"]["id"] == "mp-149"
    _, node = _run(_row_structure(table["mp-149"]), temperatures=orm.List([300.0, 600.0]))
    assert node.exit_status == TableReferenceWorkChain.exit_codes.ERROR_TEMPERATURE_NOT_TABULATED.status
    assert "600 K is not tabulated in phonondb-300K.jsonl.gz, which gives 300 K only" in node.exit_message
