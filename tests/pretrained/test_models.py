"""The shipped ensembles: offline loading, file integrity, mean and spread, basis, domain, real errors."""

from __future__ import annotations

import gzip
import json
import shutil
import warnings

import numpy as np
import pytest
from ase.build import bulk

from aiida_cgcnn.ase import CGCNNCalculator
from aiida_cgcnn.ensemble import Ensemble, OutOfDomainWarning, primitive_crystal
from aiida_cgcnn.errors import CheckpointError
from aiida_cgcnn.pretrained import MODELS_DIR, available, card, member_files
from aiida_cgcnn.pretrained.registry import sha256_file
from aiida_cgcnn.structures import to_crystal
from aiida_cgcnn.training.public_data import phonondb_crystal
from tests.builders import perovskite

SHIPPED = ["elastic-moduli", "perovskite-formation", "phonons-300K"]


@pytest.fixture(scope="module")
def phonons():
    return Ensemble.pretrained("phonons-300K")


def test_every_model_is_shipped_complete_and_small():
    assert set(SHIPPED) <= set(available())
    total = 0
    for name in available():
        entry = card(name)
        assert entry["members"] >= 5 and len(entry["files"]) == entry["members"]
        for item, path in zip(entry["files"], member_files(name), strict=True):
            assert sha256_file(path) == item["sha256"]
            total += path.stat().st_size
        assert entry["data"]["sha256"] and entry["data"]["licence"] and entry["source"]["functional"]
        assert len(entry["test_ids"]) == entry["split_counts"]["test"]
        for target in entry["targets"]:
            metrics = entry["metrics"]["targets"][target["name"]]
            assert metrics["mae"] > 0 and len(metrics["member_mae"]) == entry["members"]
    assert total < 25e6


def test_an_altered_member_is_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / "perovskite-formation", folder)
    Ensemble.from_directory(folder)  # intact: loads
    member = folder / "member-0.pt"
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 0xFF
    member.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        Ensemble.from_directory(folder)


def test_unknown_name_says_what_exists():
    with pytest.raises(ValueError, match="perovskite-formation"):
        Ensemble.pretrained("no-such-model")


def test_mean_and_std_are_the_members(phonons):
    structures = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("Si", "diamond", a=5.43),
        bulk("MgO", "rocksalt", a=4.21),
    ]
    result = phonons.predict(structures)
    members = np.stack(
        [
            m.predict([primitive_crystal(to_crystal(s, "x")) for s in structures]).values
            for m in phonons.members
        ]
    )
    np.testing.assert_allclose(result.mean, members.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.std, members.std(axis=0) * phonons.std_scale, rtol=1e-12)
    raw = phonons.predict(structures, calibrated=False)
    np.testing.assert_allclose(raw.std, members.std(axis=0), rtol=1e-12)

    # one crystal alone: float32 sums in another batch, so equal to float32 precision
    calc = CGCNNCalculator(model="phonons-300K")
    atoms = structures[1]
    cv = phonons.target_names.index("Cv")
    assert calc.get_property("heat_capacity", atoms) == pytest.approx(members[:, 1, cv].mean(), rel=1e-6)
    assert calc.get_property("heat_capacity_std", atoms) == pytest.approx(
        members[:, 1, cv].std() * phonons.std_scale[cv], rel=1e-4
    )
    assert calc.units["heat_capacity"] == "J/(K mol) per primitive cell"


def test_graphs_built_in_chunks_give_the_values_and_skips_of_one_pass(phonons, monkeypatch):
    """An ensemble holds the graphs of ``GRAPH_CHUNK`` structures at a time: chunks of two give each
    structure its one-pass values (float32 batches of other sizes: 1e-5), in order, and skip the one
    whose graph fails in a later chunk under its own name."""
    import aiida_cgcnn.predict as predict_module

    cells = [
        ("Cu", 3.6, False),
        ("Si", 5.43, True),
        ("Al", 4.05, True),
        ("Fe", 2.87, False),
        ("Ni", 3.52, True),
    ]
    structures = [bulk(symbol, a=a, cubic=cubic) for symbol, a, cubic in cells]
    stacked = bulk("Cu", a=3.6, cubic=True)
    stacked.append("Cu")
    stacked.positions[-1] = stacked.positions[0] + [0.02, 0.0, 0.0]
    structures.insert(3, stacked)
    ids = [f"s{k}" for k in range(len(structures))]
    whole = phonons.predict(structures, ids=ids, skip_invalid=True, warn=False)
    monkeypatch.setattr(predict_module, "GRAPH_CHUNK", 2)
    chunked = phonons.predict(structures, ids=ids, skip_invalid=True, warn=False)
    assert chunked.ids == whole.ids == ["s0", "s1", "s2", "s4", "s5"]
    assert [(s.id, "overlapping atoms" in s.reason) for s in chunked.skipped] == [("s3", True)]
    np.testing.assert_allclose(chunked.members, whole.members, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.std, whole.std, rtol=1e-5, atol=1e-6)


def test_conventional_cell_and_supercell_give_the_primitive_values(phonons):
    primitive = bulk("NaCl", "rocksalt", a=5.64)
    conventional = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    supercell = primitive.repeat((2, 2, 2))
    result = phonons.predict([primitive, conventional, supercell])
    assert result.cell_atoms.tolist() == [2, 8, 16]
    assert result.basis_atoms.tolist() == [2, 2, 2]
    assert result.basis == ["primitive cell"] * 4
    np.testing.assert_allclose(result.mean, np.repeat(result.mean[:1], 3, axis=0), rtol=1e-5)
    per_atom, _ = result.per_atom()
    np.testing.assert_allclose(per_atom, result.mean / 2, rtol=1e-12)
    per_fu, _ = result.per_formula_unit()
    np.testing.assert_allclose(per_fu, result.mean, rtol=1e-12)  # NaCl: one formula unit per primitive cell
    # the sum-pooled members themselves would give 4x and 8x: the basis is what keeps the label true
    raw = phonons.members[0].predict([conventional]).values[0]
    np.testing.assert_allclose(raw, 4 * phonons.members[0].predict([primitive]).values[0], rtol=1e-4)
    calc = CGCNNCalculator(model=phonons)
    assert calc.get_property("basis_atoms", conventional) == 2
    assert calc.get_property("heat_capacity_per_atom", conventional) == pytest.approx(
        per_atom[1, 1], rel=1e-9
    )


def test_an_unseen_element_is_flagged_everywhere(phonons, tmp_path):
    assert "Pu" not in card("phonons-300K")["domain"]["elements"]
    pu = bulk("NaCl", "rocksalt", a=5.64)
    pu.set_chemical_symbols(["Pu", "Cl"])
    with pytest.warns(OutOfDomainWarning, match="Pu"):
        result = phonons.predict([bulk("NaCl", "rocksalt", a=5.64), pu])
    assert result.out_of_domain[0] == ""
    assert "Pu" in result.out_of_domain[1]
    result.write_csv(tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text()
    assert "elements never seen in training: Pu" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        assert "Pu" in CGCNNCalculator(model=phonons).get_property("out_of_domain", pu)


def test_a_cell_far_larger_than_any_seen_is_flagged(phonons):
    low, largest = card("phonons-300K")["domain"]["num_atoms"]
    rng = np.random.default_rng(0)
    big = bulk("NaCl", "rocksalt", a=5.64).repeat((6, 6, 6))  # 432 atoms
    big.positions += rng.normal(scale=0.05, size=big.positions.shape)  # no symmetry left to reduce
    assert len(big) > 2 * largest
    with pytest.warns(OutOfDomainWarning):
        result = phonons.predict([big])
    assert result.basis_atoms[0] == len(big)
    assert f"{len(big)} atoms per cell, far outside the {low} to {largest}" in result.out_of_domain[0]
    # within a factor of two of the training sizes, size alone does not flag
    near = bulk("NaCl", "rocksalt", a=5.64).repeat((4, 4, 4))[: min(2 * largest, 128)]
    near.positions += rng.normal(scale=0.05, size=near.positions.shape)
    assert phonons.domain_reason(to_crystal(near, "near")) == ""


def test_perovskite_values_are_per_formula_unit():
    ensemble = Ensemble.pretrained("perovskite-formation")
    result = ensemble.predict([perovskite(), perovskite() * (2, 1, 1)])
    assert result.basis == ["formula unit"]
    np.testing.assert_allclose(result.mean[0], result.mean[1], rtol=1e-5)
    per_atom, _ = result.per_atom()
    np.testing.assert_allclose(per_atom[:, 0], result.mean[:, 0] / 5, rtol=1e-12)
    assert result.out_of_domain == ["", ""]  # a supercell of a known cell is inside the domain


@pytest.mark.data
@pytest.mark.parametrize("name", ["phonons-300K", "perovskite-formation", "elastic-moduli"])
def test_real_test_crystals_stay_within_the_stated_errors(name, shared_data):
    """Forty crystals of each model's own test part, read from the raw data files: the ensemble's
    error on them stays within twice the MAE its card states (per target)."""
    from aiida_cgcnn.pretrained import recipe

    entry = card(name)
    dataset, _, _ = recipe(name).read(shared_data)
    index = {str(i): k for k, i in enumerate(dataset.ids)}
    rows = [index[i] for i in entry["test_ids"][:40]]
    subset = dataset.subset(rows)
    result = Ensemble.pretrained(name).predict(subset, warn=False)
    for t, target in enumerate(result.target_names):
        mae = np.mean(np.abs(result.mean[:, t] - subset.targets[:, t]))
        assert mae < 2 * entry["metrics"]["targets"][target]["mae"], (target, mae)


@pytest.mark.data
def test_phonondb_records_read_as_the_table_says(shared_data):
    """The model is trained on what the table holds: first stable record, all four columns."""
    from aiida_cgcnn.training.public_data import read_phonondb_thermal

    path = shared_data / "phonondb" / "phonondb-300K.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        records = [json.loads(line) for _, line in zip(range(50), handle, strict=False)]
    stable = [r for r in records if r["min_freq_THz"] >= -0.5]
    dataset, skipped = read_phonondb_thermal(path, limit=50, targets=("U", "Cv", "S", "F"))
    assert len(dataset) == len(stable) and len(skipped) == len(records) - len(stable)
    first = stable[0]
    np.testing.assert_allclose(
        dataset.targets[0], [first["U_kJmol"], first["Cv_JKmol"], first["S_JKmol"], first["F_kJmol"]]
    )
    assert dataset.units == ["kJ/mol", "J/(K mol)", "J/(K mol)", "kJ/mol"]
    # U = F + T S / 1000 (phonopy's convention, kJ/mol)
    np.testing.assert_allclose(
        dataset.targets[:, 0], dataset.targets[:, 3] + 300 * dataset.targets[:, 2] / 1000, atol=2e-3
    )
    assert phonondb_crystal(first).num_atoms == first["natoms"]
