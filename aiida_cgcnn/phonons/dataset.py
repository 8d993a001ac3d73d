"""Training datasets of U and Cv from phonopy calculations, so that a user's own DFT phonons become
training data for the hybrid models.

Each calculation gives one structure, its phonopy **primitive cell** (the cell U and Cv are per mole
of), with U (kJ/mol) and Cv (J/(K·mol)) at each temperature. Dynamically unstable calculations are
left out and listed with their lowest frequency.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..training.dataset import CrystalDataset, Skipped
from .errors import PhononInputError
from .io import find_phonopy_calculations, read_phonopy_calculation
from .settings import PhononSettings
from .thermal import PhononProperties, phonon_properties, produce_force_constants

__all__ = ["PhononRecord", "phonon_dataset", "phonon_record", "target_names"]

U_UNIT = "kJ/mol"
CV_UNIT = "J/(K mol)"


@dataclass(frozen=True)
class PhononRecord:
    """One calculation's primitive cell (lattice rows in Å, fractional coordinates, atomic numbers)
    and its :class:`~.thermal.PhononProperties`."""

    name: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    numbers: np.ndarray
    properties: PhononProperties

    def to_atoms(self):
        """The primitive cell as ASE ``Atoms``."""
        from ase import Atoms

        return Atoms(numbers=self.numbers, cell=self.lattice, scaled_positions=self.frac_coords, pbc=True)


def target_names(temperatures_k: Sequence[float]) -> list[str]:
    """``["U", "Cv"]`` at one temperature (as phonondb's 300 K table), else ``U_300K``, ``Cv_300K``, ...

    The work chain reads a temperature from such names; a plain ``U`` is at the temperature the user
    states (300 K by default).
    """
    if len(temperatures_k) == 1:
        return ["U", "Cv"]
    names = []
    for temperature in temperatures_k:
        names += [f"U_{temperature:g}K", f"Cv_{temperature:g}K"]
    return names


def phonon_record(
    path: str | os.PathLike,
    temperatures_k: Sequence[float] = (300.0,),
    settings: PhononSettings | None = None,
) -> PhononRecord:
    """Read one calculation and compute its thermal properties."""
    from ase.data import atomic_numbers

    settings = settings or PhononSettings()
    calculation = read_phonopy_calculation(path)
    phonon = calculation.to_phonopy(settings)
    produce_force_constants(phonon, settings=settings, name=calculation.name)
    properties = phonon_properties(phonon, temperatures_k, settings)
    primitive = phonon.primitive
    return PhononRecord(
        name=calculation.name,
        lattice=np.array(primitive.cell, dtype=np.float64),
        frac_coords=np.array(primitive.scaled_positions, dtype=np.float64),
        numbers=np.array([atomic_numbers[s] for s in primitive.symbols], dtype=np.int64),
        properties=properties,
    )


def _record_or_reason(args) -> PhononRecord | str:
    path, temperatures, settings = args
    try:
        return phonon_record(path, temperatures, settings)
    except PhononInputError as error:
        return str(error)


def phonon_dataset(
    sources: Sequence[str | os.PathLike],
    temperatures_k: Sequence[float] = (300.0,),
    settings: PhononSettings | None = None,
    skip_invalid: bool = True,
    workers: int | None = 1,
) -> tuple[CrystalDataset, list[Skipped], list[PhononRecord]]:
    """A dataset of U and Cv from phonopy calculations.

    Parameters
    ----------
    sources
        Archives, folders or phonopy yaml files, or folders of them (see
        :func:`~.io.find_phonopy_calculations`).
    temperatures_k
        Temperatures in K; targets are named by :func:`target_names`.
    settings
        Mesh, NAC and the stability threshold (``stability_threshold_thz``, -0.5 THz by default).
    skip_invalid
        Leave unreadable calculations out (listed as skipped) instead of raising.
    workers
        Processes (each calculation takes about a second at a mesh length of 50).

    Returns
    -------
    dataset, skipped, records
        The dataset (ids are the calculations' names), the calculations left out with the reason
        (unstable ones included), and every stable calculation's record.
    """
    settings = settings or PhononSettings()
    temperatures = [float(t) for t in temperatures_k]
    paths: list[Path] = []
    for source in sources:
        paths += find_phonopy_calculations(source)
    if not paths:
        raise PhononInputError(f"no phonopy calculations found in {[str(s) for s in sources]}")
    jobs = [(path, temperatures, settings) for path in paths]
    if workers and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_record_or_reason, jobs, chunksize=4))
    else:
        results = [_record_or_reason(job) for job in jobs]
    records, skipped = [], []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, str):
            if not skip_invalid:
                raise PhononInputError(result)
            skipped.append(Skipped(path.name, result))
        elif not result.properties.stable:
            props = result.properties
            skipped.append(
                Skipped(
                    result.name,
                    f"unstable: lowest frequency {props.lowest_frequency_thz:.3f} THz "
                    f"< {props.stability_threshold_thz} THz (imaginary modes)",
                )
            )
        else:
            records.append(result)
    if not records:
        reasons = "; ".join(f"{s.id}: {s.reason}" for s in skipped[:5])
        raise PhononInputError(f"no usable phonopy calculation among {len(paths)}: {reasons}")
    from ..structures import Crystal

    crystals = [Crystal(r.name, r.lattice, r.frac_coords, r.numbers) for r in records]
    values = np.array(
        [
            np.column_stack([r.properties.internal_energy_kjmol, r.properties.heat_capacity_jkmol]).ravel()
            for r in records
        ]
    ).reshape(len(records), 2 * len(temperatures))
    names = target_names(temperatures)
    metadata: dict[str, Any] = {
        "source": [str(s) for s in sources],
        "per": "mole of primitive cells",
        "temperatures_K": temperatures,
        "phonopy_settings": settings.to_dict(),
    }
    if len(temperatures) == 1:
        metadata["temperature_K"] = temperatures[0]
    dataset = CrystalDataset.from_crystals(
        crystals, values, names, [U_UNIT, CV_UNIT] * len(temperatures), metadata=metadata
    )
    return dataset, skipped, records
