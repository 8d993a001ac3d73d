"""Phonopy settings of a phonon reference calculation, validated in one place.

The work chain, the dataset command and the Python API all take the same settings, so a reference
computed one way can be reproduced another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeGuard, get_args

import numpy as np

from ..errors import plain
from .errors import PhononInputError

__all__ = ["Centring", "PhononSettings", "is_centring", "supercell_matrix_for_length"]

Centring = Literal["auto", "P", "F", "I", "A", "C", "R"]
"""A primitive matrix as phonopy takes it by name: found by symmetry (``auto``) or a centring's."""


def is_centring(value: object) -> TypeGuard[Centring]:
    return isinstance(value, str) and value in get_args(Centring)


_FC_CALCULATORS = ("traditional", "symfc")


@dataclass(frozen=True)
class PhononSettings:
    """How to set up, run and analyse a finite-displacement phonon calculation.

    Attributes
    ----------
    supercell_matrix
        Supercell of the unit cell: 3 integers (diagonal) or 3x3 integers. ``None`` (default): the
        smallest diagonal supercell whose perpendicular widths are all at least
        ``min_supercell_length_angstrom``.
    min_supercell_length_angstrom
        Minimum perpendicular width of the supercell in Å when no matrix is given [10].
    primitive_matrix
        ``"auto"`` (phonopy finds the primitive cell by symmetry; default), ``"P"`` (the unit cell is
        the primitive cell), or a 3x3 matrix. U and Cv are per mole of *this* cell.
    displacement_angstrom
        Finite displacement in Å [0.01, phonopy's default].
    is_plusminus
        ``"auto"`` (default), ``True`` or ``False``: also displace in the opposite direction.
    mesh
        Sampling mesh: a length in Å (Γ-centred mesh of that length, as phonondb's 50) or 3 integers.
    symprec
        Symmetry tolerance in Å [1e-5].
    fc_calculator
        ``"traditional"`` (finite differences, symmetrised as ``phonopy.load`` does by default) or
        ``"symfc"``. The two differ by up to ~3e-4 relative in U and Cv.
    nac
        Apply the non-analytical term correction when the calculation has Born charges and a
        dielectric tensor [True]. A force engine gives neither, so NAC needs them from elsewhere.
    gamma_acoustic
        How the three acoustic modes at Γ (frequency zero, up to ~1e-8 THz of numerical noise) enter
        the thermal sums. ``"phonopy"`` (default): as in phonopy and phonondb, a mode counts when its
        noise happens to be positive, adding k_B (Cv) and k_B·T (U) per mode over the mesh's q-point
        count, ~1e-4 of Cv at a mesh length of 50; this reproduces phonondb. ``"exclude"``: never
        (phonopy's ``EXCLUDE_GAMMA_ACOUSTIC``), which is deterministic to the last digits.
    stability_threshold_thz
        A calculation whose lowest mesh frequency lies below this (imaginary modes are negative) is
        flagged unstable and left out of comparisons and datasets [-0.5 THz, phonondb's filter; tiny
        negative acoustic frequencies near Γ are numerical noise, not instability].
    """

    supercell_matrix: tuple | None = None
    min_supercell_length_angstrom: float = 10.0
    primitive_matrix: str | tuple = "auto"
    displacement_angstrom: float = 0.01
    is_plusminus: str | bool = "auto"
    mesh: float | tuple = 50.0
    symprec: float = 1e-5
    fc_calculator: str = "traditional"
    nac: bool = True
    gamma_acoustic: str = "phonopy"
    stability_threshold_thz: float = -0.5
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.extra:
            raise PhononInputError(f"unknown phonopy settings {sorted(self.extra)}; known: {self.keys()}")
        if self.supercell_matrix is not None:
            matrix = np.asarray(self.supercell_matrix)
            if matrix.shape not in ((3,), (3, 3)) or not np.allclose(matrix, np.round(matrix)):
                raise PhononInputError(
                    f"supercell_matrix must be 3 or 3x3 integers, not {plain(self.supercell_matrix)!r}"
                )
            if abs(np.linalg.det(np.diag(matrix) if matrix.shape == (3,) else matrix)) < 0.5:
                raise PhononInputError(f"supercell_matrix {plain(self.supercell_matrix)!r} is singular")
        if not self.min_supercell_length_angstrom > 0:
            raise PhononInputError("min_supercell_length_angstrom must be positive")
        if isinstance(self.primitive_matrix, str):
            if not is_centring(self.primitive_matrix):
                raise PhononInputError(
                    f"primitive_matrix {plain(self.primitive_matrix)!r}: use 'auto', 'P' or a 3x3 matrix"
                )
        elif np.asarray(self.primitive_matrix, dtype=float).shape != (3, 3):
            raise PhononInputError(
                f"primitive_matrix must be 'auto', 'P' or 3x3, not {plain(self.primitive_matrix)!r}"
            )
        if not 0 < self.displacement_angstrom < 0.5:
            raise PhononInputError(
                f"displacement_angstrom {self.displacement_angstrom} is outside (0, 0.5) Å"
            )
        if self.is_plusminus not in ("auto", True, False):
            raise PhononInputError(
                f"is_plusminus must be 'auto', true or false, not {plain(self.is_plusminus)!r}"
            )
        if isinstance(self.mesh, (int, float)):
            if not self.mesh > 0:
                raise PhononInputError(f"mesh length {self.mesh} must be positive")
        elif len(self.mesh) != 3 or any(int(n) < 1 for n in self.mesh):
            raise PhononInputError(
                f"mesh must be a length in Å or 3 positive integers, not {plain(self.mesh)!r}"
            )
        if self.fc_calculator not in _FC_CALCULATORS:
            raise PhononInputError(f"fc_calculator {self.fc_calculator!r}: use one of {_FC_CALCULATORS}")
        if self.gamma_acoustic not in ("phonopy", "exclude"):
            raise PhononInputError(f"gamma_acoustic {self.gamma_acoustic!r}: use 'phonopy' or 'exclude'")
        if not self.symprec > 0:
            raise PhononInputError("symprec must be positive")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PhononSettings:
        """Settings from a plain dictionary (e.g. an AiiDA ``Dict``); unknown keys raise."""
        values = dict(values or {})
        known = {key: values.pop(key) for key in cls.keys() if key in values}
        for key in ("supercell_matrix", "primitive_matrix", "mesh"):
            if isinstance(known.get(key), list):
                known[key] = _to_tuple(known[key])
        return cls(**known, extra=values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-storable settings (tuples become lists)."""
        values = asdict(self)
        values.pop("extra")
        return {key: _to_list(value) for key, value in values.items()}

    @property
    def mesh_value(self) -> float | list[int]:
        """The mesh as phonopy takes it: a length (float) or three integers."""
        if isinstance(self.mesh, (int, float)):
            return float(self.mesh)
        return [int(n) for n in self.mesh]

    def primitive_matrix_value(self) -> Centring | np.ndarray:
        """The primitive matrix as phonopy takes it (a name or a 3x3 float array)."""
        if is_centring(self.primitive_matrix):
            return self.primitive_matrix
        return np.asarray(self.primitive_matrix, dtype=float)

    def supercell_matrix_for(self, lattice: np.ndarray) -> np.ndarray:
        """The 3x3 integer supercell matrix for a unit cell with these lattice vectors (rows, Å)."""
        if self.supercell_matrix is None:
            return supercell_matrix_for_length(lattice, self.min_supercell_length_angstrom)
        matrix = np.rint(np.asarray(self.supercell_matrix)).astype(int)
        return np.diag(matrix) if matrix.shape == (3,) else matrix


def supercell_matrix_for_length(lattice: np.ndarray, min_length_angstrom: float) -> np.ndarray:
    """Smallest diagonal supercell whose three perpendicular widths are all ``>= min_length_angstrom``.

    The perpendicular width (distance between opposite faces) bounds the sphere a supercell holds,
    which is what limits the range of the force constants; lattice-vector lengths would not, for
    skewed cells such as the fcc primitive cell.
    """
    lattice = np.asarray(lattice, dtype=float)
    volume = abs(float(np.linalg.det(lattice)))
    widths = [volume / np.linalg.norm(np.cross(lattice[(i + 1) % 3], lattice[(i + 2) % 3])) for i in range(3)]
    return np.diag([max(1, math.ceil(min_length_angstrom / w - 1e-9)) for w in widths])


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _to_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [_to_list(v) for v in value] if isinstance(value, (list, tuple)) else value
