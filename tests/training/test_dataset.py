"""The portable .npz dataset: round trip, header, subset, readers of CGCNN directories and real data."""

from __future__ import annotations

import gzip
import json
import zipfile

import numpy as np
import pytest

from aiida_cgcnn.errors import DatasetError, InvalidStructureError
from aiida_cgcnn.training.dataset import DATASET_FORMAT, CrystalDataset, load_dataset
from tests.builders import bcc_primitive, cscl, fcc_primitive, rocksalt_conventional, rocksalt_primitive

ARRAYS = ("ids", "num_atoms", "lattices", "numbers", "frac_coords", "targets")


def toy_dataset(with_features: bool = False) -> CrystalDataset:
    crystals = [
        rocksalt_primitive(sid="NaCl"),
        cscl(sid="KCl"),
        bcc_primitive(sid="Fe"),
        rocksalt_conventional(11, 9, a=4.63, sid="NaF"),
        fcc_primitive(sid="Cu"),
    ]
    targets = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    dataset, skipped = CrystalDataset.from_structures(
        crystals,
        targets,
        ids=[c.id for c in crystals],
        target_names=["a", "b"],
        units=["eV", "GPa"],
        metadata={"source": "toy"},
    )
    assert skipped == []
    if with_features:
        dataset.features = np.arange(10, dtype=np.float64).reshape(5, 2)
        dataset.feature_names = ["f0", "f1"]
    return dataset


def assert_datasets_equal(a: CrystalDataset, b: CrystalDataset):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.target_names == b.target_names and a.units == b.units
    assert a.task == b.task and a.classes == b.classes and a.metadata == b.metadata
    assert a.feature_names == b.feature_names
    if a.features is None:
        assert b.features is None
    else:
        np.testing.assert_array_equal(a.features, b.features)


@pytest.mark.parametrize("with_features", [False, True])
def test_save_load_round_trip(tmp_path, with_features):
    dataset = toy_dataset(with_features)
    path = dataset.save(tmp_path / "sub" / "toy.npz")
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp")), "the atomic write leaves no temporary file"
    loaded = CrystalDataset.load(path)
    assert_datasets_equal(dataset, loaded)
    assert loaded.header() == dataset.header()
    assert loaded.sha256() == dataset.sha256()
    for k in range(len(dataset)):
        a, b = dataset.crystal(k), loaded.crystal(k)
        assert a.id == b.id
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)


def test_file_is_plain_numpy_without_pickle(tmp_path):
    path = toy_dataset().save(tmp_path / "toy.npz")
    with np.load(path, allow_pickle=False) as data:  # would raise for object arrays
        names = set(data.files)
        assert names == {*ARRAYS, "header"}
        assert all(data[k].dtype.kind != "O" for k in names)
        # flat arrays for all structures, not one entry per structure
        assert data["numbers"].shape == (2 + 2 + 1 + 8 + 1,)
        assert data["frac_coords"].shape == (14, 3)
        assert data["lattices"].shape == (5, 3, 3)
        header = json.loads(str(data["header"]))
    assert header["format"] == DATASET_FORMAT
    assert header["size"] == 5
    assert header["target_names"] == ["a", "b"] and header["units"] == ["eV", "GPa"]
    assert header["elements"] == ["F", "Na", "Cl", "K", "Fe", "Cu"]
    assert header["structure_sha256"] == toy_dataset().structure_hash()
    assert zipfile.is_zipfile(path)


def test_loaded_arrays_are_flat_numpy(tmp_path):
    loaded = CrystalDataset.load(toy_dataset().save(tmp_path / "toy.npz"))
    for name in ARRAYS:
        value = getattr(loaded, name)
        assert isinstance(value, np.ndarray) and value.dtype.kind != "O", name
    assert loaded.ids.dtype.kind == "U"
    assert loaded.atom_ptr.tolist() == [0, 2, 4, 5, 13, 14]


def test_subset(tmp_path):
    dataset = toy_dataset(with_features=True)
    sub = dataset.subset([3, 0])
    assert sub.ids.tolist() == ["NaF", "NaCl"]
    assert sub.num_atoms.tolist() == [8, 2]
    np.testing.assert_array_equal(sub.targets, dataset.targets[[3, 0]])
    np.testing.assert_array_equal(sub.features, dataset.features[[3, 0]])
    for k, original in enumerate([3, 0]):
        a, b = sub.crystal(k), dataset.crystal(original)
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.lattice, b.lattice)
    assert len(dataset.subset([])) == 0
    assert_datasets_equal(CrystalDataset.load(sub.save(tmp_path / "sub.npz")), sub)


def test_hashes_see_structures_and_targets():
    a = toy_dataset()
    b = toy_dataset()
    assert a.sha256() == b.sha256() and a.structure_hash() == b.structure_hash()
    b.targets[0, 0] += 1
    assert a.sha256() != b.sha256()
    assert a.structure_hash() == b.structure_hash(), "targets are not part of the graph cache key"
    b.frac_coords[0, 0] += 0.01
    assert a.structure_hash() != b.structure_hash()


def test_load_rejects_files_that_are_not_datasets(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        CrystalDataset.load(tmp_path / "missing.npz")
    not_zip = tmp_path / "bad.npz"
    not_zip.write_text("hello")
    with pytest.raises(DatasetError, match="not a readable dataset"):
        CrystalDataset.load(not_zip)
    other = tmp_path / "other.npz"
    np.savez(other, header=np.array(json.dumps({"format": "something-else"})), ids=np.array(["a"]))
    with pytest.raises(DatasetError, match="not an aiida-cgcnn-dataset"):
        CrystalDataset.load(other)
    newer = tmp_path / "newer.npz"
    dataset = toy_dataset()
    dataset.save(newer)
    with np.load(newer) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    header["version"] = 99
    arrays["header"] = np.array(json.dumps(header))
    np.savez(newer, **arrays)
    with pytest.raises(DatasetError, match="newer"):
        CrystalDataset.load(newer)


def test_inconsistent_arrays_are_rejected():
    dataset = toy_dataset()
    with pytest.raises(DatasetError, match="length"):
        CrystalDataset(
            dataset.ids[:3],
            dataset.num_atoms,
            dataset.lattices,
            dataset.numbers,
            dataset.frac_coords,
            dataset.targets,
            ["a", "b"],
            ["", ""],
        )
    with pytest.raises(DatasetError, match="atom counts"):
        CrystalDataset(
            dataset.ids,
            dataset.num_atoms,
            dataset.lattices,
            dataset.numbers[:-1],
            dataset.frac_coords[:-1],
            dataset.targets,
            ["a", "b"],
            ["", ""],
        )
    with pytest.raises(DatasetError, match="task"):
        CrystalDataset(
            dataset.ids,
            dataset.num_atoms,
            dataset.lattices,
            dataset.numbers,
            dataset.frac_coords,
            dataset.targets,
            ["a", "b"],
            ["", ""],
            task="ranking",
        )


def test_classification_targets_must_be_class_indices():
    crystals = [rocksalt_primitive(sid="a"), cscl(sid="b")]
    with pytest.raises(DatasetError, match="class indices"):
        CrystalDataset.from_structures(crystals, [0.5, 1], task="classification")
    with pytest.raises(DatasetError, match="only 2 classes"):
        CrystalDataset.from_structures(crystals, [0, 2], task="classification", classes=["x", "y"])
    dataset, _ = CrystalDataset.from_structures(crystals, [0, 1], task="classification", classes=["x", "y"])
    assert dataset.task == "classification" and dataset.classes == ["x", "y"]


def test_structures_without_targets_for_prediction():
    with pytest.raises(DatasetError, match="no targets"):
        CrystalDataset.from_structures([rocksalt_primitive()])
    dataset, _ = CrystalDataset.from_structures([rocksalt_primitive()], require_targets=False)
    assert np.isnan(dataset.targets).all()


def test_cgcnn_directory_reader_real_data(jarvis_dir, tmp_path):
    with pytest.raises(DatasetError) as info:
        CrystalDataset.from_cgcnn_directory(jarvis_dir)
    assert "POSCAR-JVASP-21210.vasp" in str(info.value) and "noble-gas" in str(info.value)
    dataset, skipped = CrystalDataset.from_cgcnn_directory(jarvis_dir, skip_invalid=True, units=["eV"])
    rows = [line.split(",") for line in (jarvis_dir / "id_prop.csv").read_text().split()]
    assert len(dataset) == len(rows) - 1 == 49
    assert [s.id for s in skipped] == ["POSCAR-JVASP-21210.vasp"]
    expected = {name: float(value) for name, value in rows}
    for sid, target in zip(dataset.ids, dataset.targets[:, 0], strict=True):
        assert target == expected[str(sid)]
    assert dataset.units == ["eV"] and dataset.target_names == ["target"]
    again = load_dataset(dataset.save(tmp_path / "jarvis.npz"))[0]
    assert_datasets_equal(dataset, again)


def test_cgcnn_style_ids_get_cif_added(tmp_path):
    from pymatgen.core import Lattice, Structure

    Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(tmp_path / "mp-1.cif")
    )
    Structure(Lattice.cubic(3.78), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(tmp_path / "mp-2.cif")
    )
    (tmp_path / "id_prop.csv").write_text("mp-1,1.5,3\nmp-2,-0.5,4\n")
    dataset, skipped = CrystalDataset.from_cgcnn_directory(tmp_path, target_names=["e", "g"])
    assert skipped == []
    assert dataset.ids.tolist() == ["mp-1", "mp-2"]
    np.testing.assert_array_equal(dataset.targets, [[1.5, 3], [-0.5, 4]])
    assert dataset.target_names == ["e", "g"]


def test_load_dataset_dispatches_on_the_source(tmp_path):
    dataset = toy_dataset()
    npz = dataset.save(tmp_path / "toy.npz")
    assert_datasets_equal(load_dataset(npz)[0], dataset)
    cif = tmp_path / "one.cif"
    rocksalt_primitive().to_pymatgen().to(filename=str(cif))
    single, _ = load_dataset(cif)
    assert len(single) == 1 and single.ids.tolist() == ["one"] and np.isnan(single.targets).all()
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "nothing-here")


def test_real_data_readers(shared_data):
    from aiida_cgcnn.training.public_data import (
        read_castelli_perovskites,
        read_matcalc_structures,
    )

    perovskites, _ = read_castelli_perovskites(
        shared_data / "perovskites" / "castelli-perov5-part-a.csv.gz", limit=10
    )
    assert len(perovskites) == 10 and set(perovskites.num_atoms.tolist()) == {5}
    assert perovskites.units == ["eV/cell"] and np.isfinite(perovskites.targets).all()
    # the file's first rows: CdCuN3 (material 18517) and VIrO3 (15400), heat_all not heat_ref
    assert perovskites.ids[:2].tolist() == ["perovskite-18517", "perovskite-15400"]
    assert perovskites.targets[:2, 0].tolist() == [2.76, 1.16]
    wbm, _ = read_matcalc_structures(
        shared_data / "wbm" / "wbm-random-pbe52-equilibrium-2025.1.json.gz",
        {"formation_energy_per_atom": "eV/atom"},
        id_key="material_id",
        limit=20,
    )
    assert len(wbm) == 20 and np.isfinite(wbm.targets).all()
    assert wbm.ids[:3].tolist() == ["wbm-3-38149", "wbm-4-28694", "wbm-1-51327"]
    assert wbm.targets[:3, 0].tolist() == [-0.291504044, -0.582544729, -0.825679481]
    assert wbm.num_atoms[:3].tolist() == [10, 5, 4]


def test_elastic_moduli_are_log10_of_the_raw_values(shared_data, tmp_path):
    from aiida_cgcnn.training.public_data import read_matcalc_structures

    path = shared_data / "mp-elasticity" / "mp-binary-pbe-elasticity-2025.1.json.gz"
    columns = {"bulk_modulus_vrh": "GPa", "shear_modulus_vrh": "GPa"}
    elastic, skipped = read_matcalc_structures(path, columns, id_key="mp_id", transform="log10", limit=3)
    assert skipped == [] and elastic.target_names == ["log10_bulk_modulus_vrh", "log10_shear_modulus_vrh"]
    assert elastic.units == ["log10(GPa)", "log10(GPa)"]
    # the file's first records, K and G in GPa as Materials Project gives them
    raw = {"mp-975512": (53.357, 12.164), "mp-867189": (44.905, 22.668), "mp-1039148": (25.36, 14.975)}
    assert elastic.ids.tolist() == list(raw)
    np.testing.assert_allclose(elastic.targets, np.log10(list(raw.values())), rtol=1e-14)
    assert elastic.num_atoms.tolist() == [4, 4, 2]  # InSb3, Pm3Pb, CaMg
    # a non-positive modulus has no log10: that record is left out and named, the others kept
    with gzip.open(path, "rt") as handle:
        records = json.load(handle)[:3]
    records[1]["shear_modulus_vrh"] = -2.0
    bad = tmp_path / "bad.json.gz"
    with gzip.open(bad, "wt") as handle:
        json.dump(records, handle)
    kept, skipped = read_matcalc_structures(bad, columns, id_key="mp_id", transform="log10")
    assert kept.ids.tolist() == ["mp-975512", "mp-1039148"]
    assert [s.id for s in skipped] == ["mp-867189"] and "non-positive" in skipped[0].reason
    with pytest.raises(InvalidStructureError, match="mp-867189"):
        read_matcalc_structures(bad, columns, id_key="mp_id", transform="log10", skip_invalid=False)


def test_phonondb_columns_and_the_unstable_filter_on_known_rows(shared_data):
    from aiida_cgcnn.training.public_data import read_phonondb_thermal

    path = shared_data / "phonondb" / "phonondb-300K.jsonl.gz"
    phonons, skipped = read_phonondb_thermal(path, limit=23)
    # the first 23 rows hold four unstable materials (-1.57, -0.71, -1.11 and -2.85 THz; mp-10175 is
    # KCdF3); mp-10246 (-0.16 THz) and the rows whose lowest frequency is Γ noise (~-1e-8 THz) are kept
    unstable = ["mp-10070", "mp-10159", "mp-10167", "mp-10175"]
    assert [s.id for s in skipped] == unstable
    assert skipped[0].reason == "unstable: lowest frequency -1.57 THz"
    assert len(phonons) == 19 and phonons.ids[-1] == "mp-10246"
    assert phonons.target_names == ["U", "Cv"] and phonons.units == ["kJ/mol", "J/(K mol)"]
    known = {  # the table's rows: U (kJ/mol), Cv (J/(K mol)) per mole of primitive cells
        "mp-1000": (15.14186380938651, 49.29479409764558),  # BaTe, 2 atoms
        "mp-10009": (62.35010035863771, 191.4874429304848),  # GaTe, 8 atoms
        "mp-10159": None,
    }
    ids = phonons.ids.tolist()
    for sid, values in known.items():
        if values is None:
            assert sid not in ids
            continue
        k = ids.index(sid)
        assert phonons.targets[k].tolist() == list(values)
    assert phonons.num_atoms[:2].tolist() == [2, 8]
    np.testing.assert_array_equal(phonons.numbers[:2], [52, 56])  # Te, Ba in the table's order
    # other columns, in the order asked
    other, _ = read_phonondb_thermal(path, limit=1, targets=("F", "S", "Cv"))
    assert other.target_names == ["F", "S", "Cv"] and other.units == ["kJ/mol", "J/(K mol)", "J/(K mol)"]
    assert other.targets[0].tolist() == [-16.09622708258582, 104.12696963990777, 49.29479409764558]
    # a stricter threshold leaves out mp-10246 too
    strict, skipped = read_phonondb_thermal(path, limit=23, min_freq_thz=-0.1)
    assert [s.id for s in skipped] == [*unstable, "mp-10246"] and len(strict) == 18
