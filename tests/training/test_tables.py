"""`read_table` / `aiida-cgcnn dataset import`: datasets from JSON, JSON Lines, CSV and ASE databases."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure

from aiida_cgcnn.errors import DatasetError
from aiida_cgcnn.training.dataset import CrystalDataset
from aiida_cgcnn.training.tables import parse_condition, read_table
from tests.cli.helpers import cli


def _rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _flat_records():
    """phonondb's layout: a primitive cell as arrays, values per record, a stability column."""
    records = []
    for k, a in enumerate([5.4, 5.6, 5.8, 6.0]):
        cell = bulk("NaCl", "rocksalt", a=a)
        records.append(
            {
                "mp_id": f"mp-{k}",
                "lattice": cell.cell[:].tolist(),
                "species": cell.get_chemical_symbols(),
                "frac_coords": cell.get_scaled_positions().tolist(),
                "U_kJmol": 10.0 + k,
                "min_freq_THz": -1.0 if k == 2 else 0.1,
            }
        )
    return records


def test_json_lines_with_arrays_ids_and_conditions(tmp_path):
    path = tmp_path / "table.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in _flat_records())
    data, skipped = read_table(path, {"U_kJmol": "kJ/mol"}, target_names=["U"], where=["min_freq_THz>=-0.5"])
    assert skipped == [] and data.ids.tolist() == ["mp-0", "mp-1", "mp-3"]
    assert data.target_names == ["U"] and data.units == ["kJ/mol"]
    assert data.targets[:, 0].tolist() == [10.0, 11.0, 13.0]
    assert data.metadata["filtered_out"] == 1 and data.metadata["where"] == ["min_freq_THz>=-0.5"]
    assert data.num_atoms.tolist() == [2, 2, 2]


def test_json_list_of_pymatgen_dicts_with_log10(tmp_path):
    records = [
        {"material_id": f"m{k}", "structure": _rocksalt(5.5 + 0.1 * k).as_dict(), "K": value}
        for k, value in enumerate([10.0, 100.0, -1.0])
    ]
    (tmp_path / "t.json").write_text(json.dumps(records))
    with pytest.raises(DatasetError, match=r"'m2'.*non-positive K"):
        read_table(tmp_path / "t.json", {"K": "GPa"}, log10=True)
    data, skipped = read_table(tmp_path / "t.json", {"K": "GPa"}, log10=True, skip_invalid=True)
    assert data.ids.tolist() == ["m0", "m1"] and [s.id for s in skipped] == ["m2"]
    assert data.targets[:, 0].tolist() == [1.0, 2.0]
    assert data.target_names == ["log10_K"] and data.units == ["log10(GPa)"]
    # the same crystal as pymatgen reads it (conventional cell, 8 atoms)
    assert data.num_atoms.tolist() == [8, 8]


def test_csv_with_cif_text_and_with_file_paths(tmp_path):
    import csv

    for k in range(3):
        _rocksalt(5.5 + 0.1 * k).to(filename=str(tmp_path / f"s{k}.cif"))
    with open(tmp_path / "text.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif", "gap"])
        for k in range(3):
            writer.writerow([f"s{k}", (tmp_path / f"s{k}.cif").read_text(), 0.5 * k])
    (tmp_path / "files.csv").write_text("name,file,gap\n" + "".join(f"x{k},s{k}.cif,{k}\n" for k in range(3)))
    by_text, _ = read_table(tmp_path / "text.csv", {"gap": "eV"})
    by_file, _ = read_table(tmp_path / "files.csv", {"gap": "eV"})
    assert by_text.ids.tolist() == ["s0", "s1", "s2"] and by_file.ids.tolist() == ["x0", "x1", "x2"]
    np.testing.assert_allclose(by_text.lattices, by_file.lattices)
    assert by_text.structure_hash() == by_file.structure_hash()


def test_ase_database(tmp_path):
    import ase.db

    with ase.db.connect(str(tmp_path / "cells.db")) as db:
        for k, element in enumerate(["Cu", "Ni", "Al"]):
            db.write(bulk(element, cubic=True), name=f"{element}-fcc", energy_per_atom=-0.1 * k)
    data, _ = read_table(tmp_path / "cells.db", {"energy_per_atom": "eV/atom"}, id_key="name")
    assert data.ids.tolist() == ["Cu-fcc", "Ni-fcc", "Al-fcc"] and data.targets[:, 0].tolist() == [
        0.0,
        -0.1,
        -0.2,
    ]


def test_errors_name_what_to_do(tmp_path):
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in _flat_records()))
    with pytest.raises(DatasetError, match=r"no target key 'Cv'.*U_kJmol"):
        read_table(tmp_path / "t.jsonl", {"Cv": "J/(K mol)"})
    with pytest.raises(DatasetError, match="unknown table format"):
        read_table(tmp_path / "t.jsonl", {"U_kJmol": "kJ/mol"}, fmt="xlsx")
    (tmp_path / "t.txt").write_text("")
    with pytest.raises(DatasetError, match="--format"):
        read_table(tmp_path / "t.txt", {"U_kJmol": "kJ/mol"})
    with pytest.raises(DatasetError, match="KEY OP VALUE"):
        parse_condition("min_freq_THz")
    with pytest.raises(DatasetError, match="no key 'T'"):
        read_table(tmp_path / "t.jsonl", {"U_kJmol": "kJ/mol"}, where=["T==300"])
    (tmp_path / "dup.jsonl").write_text(
        "\n".join(json.dumps({**r, "mp_id": "same"}) for r in _flat_records())
    )
    with pytest.raises(DatasetError, match=r"(?s)3 invalid structure\(s\).*duplicate id"):
        read_table(tmp_path / "dup.jsonl", {"U_kJmol": "kJ/mol"})


def test_a_nested_structure_without_species_or_coordinates_is_skipped_with_its_reason(tmp_path):
    # a dict under --structure lacking a key used to end the import with a TypeError/KeyError
    records = []
    for record in _flat_records():
        cell = {k: record.pop(k) for k in ("lattice", "species", "frac_coords")}
        records.append({**record, "cell": cell})
    del records[1]["cell"]["species"]
    del records[2]["cell"]["frac_coords"]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    data, skipped = read_table(
        tmp_path / "t.jsonl", {"U_kJmol": "kJ/mol"}, structure_key="cell", skip_invalid=True
    )
    assert data.ids.tolist() == ["mp-0", "mp-3"]
    assert [s.id for s in skipped] == ["mp-1", "mp-2"]
    assert all("need lattice, species (or numbers) and frac_coords" in s.reason for s in skipped)
    assert "['frac_coords', 'lattice']" in skipped[0].reason


def test_the_command_writes_the_dataset_and_lists_what_it_left_out(tmp_path):
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in _flat_records()))
    run = cli(
        "dataset", "import", tmp_path / "t.jsonl", "-o", tmp_path / "d.npz", "-t", "U_kJmol=kJ/mol",
        "--where", "min_freq_THz>=-0.5",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Left out 1 record(s)" in run.stdout and "Wrote 3 structures" in run.stdout
    assert CrystalDataset.load(tmp_path / "d.npz").units == ["kJ/mol"]
    bad = cli("dataset", "import", tmp_path / "t.jsonl", "-o", tmp_path / "e.npz", "-t", "U_kJmol")
    assert bad.returncode == 2 and "KEY=UNIT" in bad.stderr


def test_phonondb_table_gives_what_its_dedicated_reader_gives(shared_data):
    from aiida_cgcnn.training.public_data import read_phonondb_thermal

    path = shared_data / "phonondb" / "phonondb-300K.jsonl.gz"
    if not path.is_file():
        pytest.skip("the phonondb table is absent from the real data")
    expected, _ = read_phonondb_thermal(path, limit=400)
    data, _ = read_table(
        path,
        {"U_kJmol": "kJ/mol", "Cv_JKmol": "J/(K mol)"},
        target_names=["U", "Cv"],
        id_key="mp_id",
        where=["min_freq_THz>=-0.5"],
        limit=400,
        skip_invalid=True,
    )
    assert data.ids.tolist() == expected.ids.tolist()
    assert data.units == expected.units and np.array_equal(data.targets, expected.targets)
    assert data.structure_hash() == expected.structure_hash()
