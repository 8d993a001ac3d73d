"""Readers for existing phonopy calculations: a unit cell, force sets, optionally Born charges, and the
supercell and primitive matrices.

Layouts read:

- phonondb (A. Togo): a folder, or a ``.tar.lzma``/``.tar.xz``/``.tar.gz``/``.tar`` archive of one,
  holding ``POSCAR-unitcell``, ``FORCE_SETS``, ``phonopy.conf`` (``DIM``, ``PRIMITIVE_AXIS``) and
  ``BORN`` when the material is polar. The archive is read with Python's ``tarfile`` (``lzma``),
  extracting only those files, as regular files, into a temporary folder.
- phonopy yaml: ``phonopy_params.yaml`` (or any phonopy yaml) with the dataset and forces inside,
  or with ``FORCE_SETS`` (and ``BORN``) beside it.

Files are parsed by phonopy itself (``phonopy.load``), so the result is what phonopy would compute.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from .errors import PhononInputError
from .settings import Centring, PhononSettings

if TYPE_CHECKING:
    from phonopy.harmonic.displacement import DisplacementDataset
    from phonopy.harmonic.dynamical_matrix import NacParams

__all__ = [
    "PhonopyCalculation",
    "find_phonopy_calculations",
    "read_phonopy_calculation",
]

_ARCHIVE_SUFFIXES = (".tar.lzma", ".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
_PHONONDB_FILES = ("POSCAR-unitcell", "FORCE_SETS", "phonopy.conf", "BORN")
_YAML_NAMES = ("phonopy_params.yaml", "phonopy.yaml", "phonopy_disp.yaml", "phono3py_params.yaml")


@dataclass
class PhonopyCalculation:
    """A finite-displacement calculation as phonopy sees it.

    Attributes
    ----------
    name
        Identifier used in every message (the archive or folder name, e.g.
        ``materials-id-1000-bate-fm-3m-225``, phonondb's ``name``).
    unitcell
        The unit cell (``PhonopyAtoms``; Å).
    supercell_matrix
        3x3 integers.
    primitive_matrix
        3x3 floats, or ``"auto"``.
    dataset
        phonopy's displacement dataset with the forces (eV/Å).
    nac_params
        ``born`` (primitive atoms, 3, 3), ``dielectric`` (3, 3) and ``factor``, or ``None``.
    source
        Where it was read from.
    """

    name: str
    unitcell: PhonopyAtoms
    supercell_matrix: np.ndarray
    primitive_matrix: np.ndarray | Centring
    dataset: dict[str, Any]
    nac_params: dict[str, Any] | None
    source: str
    symprec: float = 1e-5

    @property
    def forces(self) -> np.ndarray | None:
        """Forces in eV/Å, shape (displaced supercells, atoms, 3), or ``None`` when missing."""
        first_atoms = self.dataset.get("first_atoms")
        if first_atoms is not None:
            if not first_atoms or any("forces" not in d for d in first_atoms):
                return None
            return np.array([d["forces"] for d in first_atoms], dtype=np.float64)
        forces = self.dataset.get("forces")
        return None if forces is None else np.asarray(forces, dtype=np.float64)

    def displacement_dataset(self) -> dict[str, Any]:
        """The dataset without forces (what a force engine starts from)."""
        if "first_atoms" in self.dataset:
            return {
                "natom": self.dataset["natom"],
                "first_atoms": [
                    {"number": int(d["number"]), "displacement": np.asarray(d["displacement"]).tolist()}
                    for d in self.dataset["first_atoms"]
                ],
            }
        return {"displacements": np.asarray(self.dataset["displacements"]).tolist()}

    def to_phonopy(self, settings: PhononSettings | None = None, with_forces: bool = True) -> Phonopy:
        """A ``Phonopy`` with this calculation's cells, dataset (and forces) and, when ``settings.nac``,
        its NAC parameters; force constants are not produced yet."""
        settings = settings or PhononSettings()
        phonon = Phonopy(
            self.unitcell,
            supercell_matrix=self.supercell_matrix,
            primitive_matrix=self.primitive_matrix,
            symprec=self.symprec,
        )
        # phonopy's own layouts: read by phonopy, or written by displacement_dataset
        dataset = self.dataset if with_forces else self.displacement_dataset()
        phonon.dataset = cast("DisplacementDataset", dataset)
        if settings.nac and self.nac_params is not None:
            phonon.nac_params = cast("NacParams", self.nac_params)
        return phonon


def _parse_conf(path: Path) -> dict[str, str]:
    tags = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0]
        if "=" in line:
            key, value = line.split("=", 1)
            tags[key.strip().upper()] = value.strip()
    return tags


def _numbers(text: str, name: str, tag: str) -> list[float]:
    try:
        return [float(Fraction(token)) for token in text.split()]
    except (ValueError, ZeroDivisionError) as error:
        raise PhononInputError(f"{name}: cannot read {tag} = {text!r}: {error}") from error


def _conf_matrices(conf: dict[str, str], name: str) -> tuple[np.ndarray, np.ndarray | Centring]:
    if "DIM" not in conf:
        raise PhononInputError(f"{name}: phonopy.conf has no DIM (the supercell matrix)")
    dim = _numbers(conf["DIM"], name, "DIM")
    if len(dim) not in (3, 9) or not np.allclose(dim, np.round(dim)):
        raise PhononInputError(f"{name}: DIM must be 3 or 9 integers, not {conf['DIM']!r}")
    supercell = np.diag(np.rint(dim).astype(int)) if len(dim) == 3 else np.rint(dim).astype(int).reshape(3, 3)
    axis_text = conf.get("PRIMITIVE_AXIS", conf.get("PRIMITIVE_AXES", "")).strip()
    if not axis_text or axis_text.lower() == "auto":
        return supercell, "auto"
    axis = _numbers(axis_text, name, "PRIMITIVE_AXIS")
    if len(axis) != 9:
        raise PhononInputError(f"{name}: PRIMITIVE_AXIS must have 9 numbers, not {axis_text!r}")
    return supercell, np.array(axis).reshape(3, 3)


def _from_loaded(phonon: Phonopy, name: str, source: str) -> PhonopyCalculation:
    dataset = phonon.dataset
    if dataset is None:
        raise PhononInputError(f"{name}: missing forces: no FORCE_SETS or dataset in {source}")
    calculation = PhonopyCalculation(
        name=name,
        unitcell=phonon.unitcell,
        supercell_matrix=np.array(phonon.supercell_matrix, dtype=int),
        primitive_matrix=np.array(phonon.primitive_matrix, dtype=float),
        dataset=dict(dataset),
        nac_params=None if phonon.nac_params is None else dict(phonon.nac_params),
        source=source,
        symprec=float(phonon.symmetry.tolerance),
    )
    if calculation.forces is None:
        raise PhononInputError(f"{name}: missing forces: the displacement dataset in {source} has no forces")
    natom = calculation.forces.shape[1]
    if natom != len(phonon.supercell):
        raise PhononInputError(
            f"{name}: the force sets have {natom} atoms per supercell but the supercell matrix "
            f"{calculation.supercell_matrix.tolist()} gives {len(phonon.supercell)}"
        )
    return calculation


def _load(name: str, source: str, **kwargs: Any) -> Phonopy:
    import phonopy

    try:
        return phonopy.load(produce_fc=False, log_level=0, **kwargs)
    except PhononInputError:
        raise
    except Exception as error:  # phonopy's parsers raise many types; name the calculation
        raise PhononInputError(f"{name}: phonopy cannot read {source}: {error}") from error


def _read_phonondb_folder(folder: Path, name: str, source: str) -> PhonopyCalculation:
    missing = [f for f in ("POSCAR-unitcell", "phonopy.conf") if not (folder / f).is_file()]
    if missing:
        raise PhononInputError(f"{name}: {', '.join(missing)} missing in {source}")
    if not (folder / "FORCE_SETS").is_file():
        raise PhononInputError(f"{name}: missing forces: no FORCE_SETS in {source}")
    supercell, primitive = _conf_matrices(_parse_conf(folder / "phonopy.conf"), name)
    born = folder / "BORN"
    phonon = _load(
        name,
        source,
        supercell_matrix=supercell,
        primitive_matrix=primitive,
        unitcell_filename=str(folder / "POSCAR-unitcell"),
        force_sets_filename=str(folder / "FORCE_SETS"),
        born_filename=str(born) if born.is_file() else None,
        is_nac=born.is_file(),
    )
    return _from_loaded(phonon, name, source)


def _read_yaml(path: Path, name: str, source: str) -> PhonopyCalculation:
    force_sets = path.parent / "FORCE_SETS"
    born = path.parent / "BORN"
    kwargs: dict[str, Any] = {"phonopy_yaml": str(path)}
    if force_sets.is_file():
        kwargs["force_sets_filename"] = str(force_sets)
    if born.is_file():
        kwargs["born_filename"] = str(born)
    cwd = os.getcwd()
    # phonopy.load also looks for FORCE_SETS/BORN in the working directory: make that the file's own
    try:
        os.chdir(path.parent)
        phonon = _load(name, source, **kwargs)
    finally:
        os.chdir(cwd)
    return _from_loaded(phonon, name, source)


def _archive_name(path: Path) -> str:
    name = path.name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_archive(path: Path) -> PhonopyCalculation:
    name = _archive_name(path)
    with tempfile.TemporaryDirectory(prefix="phonopy-") as tmp:
        try:
            with tarfile.open(path) as archive:  # compression (lzma, gzip, bz2) detected from the content
                members = [
                    m
                    for m in archive.getmembers()
                    if m.isfile() and Path(m.name).name in (*_PHONONDB_FILES, *_YAML_NAMES)
                ]
                for member in members:
                    # only regular files, flattened into tmp: nothing in an archive can write elsewhere
                    target = Path(tmp) / Path(member.name).name
                    handle = archive.extractfile(member)
                    assert handle is not None
                    target.write_bytes(handle.read())
        except (tarfile.TarError, OSError, EOFError) as error:
            raise PhononInputError(f"{name}: cannot read the archive {path}: {error}") from error
        return _read_folder(Path(tmp), name, str(path))


def _read_folder(folder: Path, name: str, source: str) -> PhonopyCalculation:
    if (folder / "phonopy.conf").is_file() or (folder / "POSCAR-unitcell").is_file():
        return _read_phonondb_folder(folder, name, source)
    for yaml_name in _YAML_NAMES:
        if (folder / yaml_name).is_file():
            return _read_yaml(folder / yaml_name, name, source)
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    if len(subfolders) == 1:  # phonondb archives hold one folder, e.g. mp-1000-20180417/
        return _read_folder(subfolders[0], name, source)
    raise PhononInputError(
        f"{name}: no phonopy calculation in {source} (expected POSCAR-unitcell + FORCE_SETS + phonopy.conf, "
        f"or one of {', '.join(_YAML_NAMES)})"
    )


def read_phonopy_calculation(path: str | os.PathLike, name: str | None = None) -> PhonopyCalculation:
    """Read one phonopy calculation: a phonondb archive or folder, or a phonopy yaml file.

    Raises
    ------
    PhononInputError
        Naming the calculation, for missing files or forces and inconsistent cells.
    """
    path = Path(path)
    if not path.exists():
        raise PhononInputError(f"{name or path.name}: {path} does not exist")
    if path.is_dir():
        return _read_folder(path, name or path.name, str(path))
    if any(path.name.endswith(s) for s in _ARCHIVE_SUFFIXES):
        calculation = _read_archive(path)
        if name:
            calculation.name = name
        return calculation
    if path.suffix in (".yaml", ".yml"):
        return _read_yaml(path, name or path.stem, str(path))
    raise PhononInputError(f"{name or path.name}: {path} is not an archive, folder or phonopy yaml file")


def find_phonopy_calculations(folder: str | os.PathLike) -> list[Path]:
    """The phonopy calculations in ``folder``: archives, phonopy yaml files and subfolders that hold a
    calculation; sorted by name. A folder that is itself one calculation (phonondb files, or a single
    phonopy yaml) gives itself, so that the calculation is named after the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return [folder]
    if any((folder / f).is_file() for f in ("phonopy.conf", "POSCAR-unitcell")):
        return [folder]
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and (
            any(path.name.endswith(s) for s in _ARCHIVE_SUFFIXES)
            or (path.suffix in (".yaml", ".yml") and "phono" in path.name)
        ):
            found.append(path)
        elif path.is_dir() and any(_holds_calculation(p) for p in [path, *path.iterdir()] if p.is_dir()):
            found.append(path)
    if len(found) == 1 and found[0].name in _YAML_NAMES:  # a folder holding one calculation as yaml
        return [folder]
    return found


def _holds_calculation(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("phonopy.conf", "POSCAR-unitcell", *_YAML_NAMES))


def iter_phonopy_calculations(folder: str | os.PathLike) -> Iterator[PhonopyCalculation]:
    """Read every calculation of :func:`find_phonopy_calculations` in turn."""
    for path in find_phonopy_calculations(folder):
        yield read_phonopy_calculation(path)
