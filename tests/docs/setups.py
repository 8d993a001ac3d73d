"""What a documentation snippet may assume, by name (``<!-- snippet: setup NAME -->``).

A setup prepares files in the snippet's scratch directory (for shell and Python blocks alike) and/or
Python code run before a Python block. Each stands in for what the page's prose says the reader has:
"structures: pymatgen Structures, ASE Atoms or CIF/POSCAR paths", "a dataset file", "a trained run".
A setup named ``NAME:ARG`` passes ARG (``pretrained:phonons-300K``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["SETUPS", "Setup"]


class Setup:
    def __init__(
        self, files: Callable[[Path, str], None] | None = None, prelude: str = "", aiida: bool = False
    ):
        self.files = files
        self.prelude = prelude
        self.aiida = aiida  # the prelude stores nodes: the block runs through ``verdi run``


def _structure_files(directory: Path, _: str) -> None:
    from ase.build import bulk

    folder = directory / "structures"
    folder.mkdir(exist_ok=True)
    bulk("NaCl", "rocksalt", a=5.64).write(folder / "NaCl.cif")
    bulk("Si", "diamond", a=5.43).write(folder / "Si.cif")
    bulk("MgO", "rocksalt", a=4.21).write(folder / "MgO.cif")


def _data_directory(directory: Path, _: str) -> None:
    from tests.datadirs import write_valid_directory

    write_valid_directory(directory / "my-data", n=12)


def _dataset(directory: Path, _: str) -> None:
    """``data.npz``: 24 EMT alloys with their EMT energies standing in for formation energies
    (eV/atom), and ``new-data.npz`` (12 more)."""
    from aiida_cgcnn.demo import emt_alloys
    from aiida_cgcnn.training.dataset import CrystalDataset

    for name, n, seed in (("data.npz", 24, 0), ("new-data.npz", 12, 1)):
        structures, energies = emt_alloys(n, seed=seed)
        dataset, _ = CrystalDataset.from_structures(
            structures, energies, target_names=["formation_energy_per_atom"], units=["eV/atom"]
        )
        dataset.save(directory / name)


def _trained_run(directory: Path, _: str) -> None:
    """``data.npz`` and ``run/`` (``best.pt``, ``last.pt``, ...): a CGCNN of the default sizes (so that
    the command line's defaults fine-tune it) trained 2 epochs; ``pretrained/best.pt`` is a copy."""
    from aiida_cgcnn.training.dataset import CrystalDataset
    from aiida_cgcnn.training.trainer import Trainer

    if not (directory / "data.npz").exists():
        _dataset(directory, "")
    Trainer(
        CrystalDataset.load(directory / "data.npz"),
        directory / "run",
        train_config={"epochs": 2, "batch_size": 8},
        progress=False,
    ).fit()
    (directory / "pretrained").mkdir(exist_ok=True)
    (directory / "pretrained" / "best.pt").write_bytes((directory / "run" / "best.pt").read_bytes())


def _features(directory: Path, _: str) -> None:
    """``my_features.csv``: one feature of your own per structure of ``data.npz``."""
    from aiida_cgcnn.training.dataset import CrystalDataset

    if not (directory / "data.npz").exists():
        _dataset(directory, "")
    ids = CrystalDataset.load(directory / "data.npz").ids.tolist()
    rows = "".join(f"{sid},{0.1 * k:.2f}\n" for k, sid in enumerate(ids))
    (directory / "my_features.csv").write_text("id,my_feature\n" + rows)


def _pretrained(directory: Path, name: str) -> None:
    from aiida_cgcnn.pretrained.registry import available

    if name not in available():
        pytest.skip(f"the pretrained model {name!r} is not installed")


_ALLOYS = """
from aiida_cgcnn.demo import emt_alloys

structures, energies = emt_alloys(40, seed=0)   # ASE Atoms, EMT energies in eV/atom
targets = energies
ids = [f"alloy-{k}" for k in range(len(structures))]
new_structures, _ = emt_alloys(3, seed=1)
"""

_CRYSTALS = """
from ase.build import bulk

structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
structures.append(bulk("MgO", "rocksalt", a=4.21))
atoms = structures[0]
"""

# a group "my-structures" of stored alloys with their energies, a trained ModelData, the localhost code
_AIIDA = """
from aiida import orm
from aiida_cgcnn.demo import emt_alloys

_atoms, targets = emt_alloys(24, seed=0)
energies = targets
_group, _ = orm.Group.collection.get_or_create("my-structures")
if not _group.count():
    _group.add_nodes([orm.StructureData(ase=a).store() for a in _atoms])
structure = orm.StructureData(ase=_atoms[0]).store()
structure_a, structure_b = (orm.StructureData(ase=a).store() for a in emt_alloys(2, seed=5)[0])
"""

_AIIDA_MODEL = """
from aiida_cgcnn.data.model import ModelData
from aiida_cgcnn.training import CrystalDataset, Trainer

_dataset, _ = CrystalDataset.from_structures(
    _atoms, targets, target_names=["formation_energy"], units=["eV/atom"]
)
_result = Trainer(_dataset, "aiida-model-run", model_config={"atom_fea_len": 8, "n_conv": 1},
                  train_config={"epochs": 1}, progress=False).fit()
model = ModelData.get_or_create(_result.best_checkpoint)
"""

SETUPS: dict[str, Setup] = {
    "structures": Setup(_structure_files, _CRYSTALS),
    "my-data": Setup(_data_directory),
    "dataset": Setup(_dataset),
    "run": Setup(_trained_run),
    "features": Setup(_features),
    "alloys": Setup(prelude=_ALLOYS),
    "aiida": Setup(prelude=_AIIDA, aiida=True),
    "aiida-model": Setup(prelude=_AIIDA + _AIIDA_MODEL, aiida=True),
    "pretrained": Setup(_pretrained),
}
