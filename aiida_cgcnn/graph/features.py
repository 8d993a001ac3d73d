"""Atom and edge features.

Atom features are the one-hot encoding of Table II of the CGCNN paper's supplement, computed from
pymatgen's element data when first asked for (never a copied ``atom_init.json``). The table is stored
in every checkpoint, so a model predicts with the features it was trained with.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import torch

from ..elements import MAX_ATOMIC_NUMBER, NOBLE_GASES

__all__ = [
    "ATOM_PROPERTIES",
    "MAX_ATOMIC_NUMBER",
    "NOBLE_GASES",
    "AtomProperty",
    "GaussianExpansion",
    "atom_feature_table",
    "element_properties",
]


@dataclass(frozen=True)
class AtomProperty:
    """One row of Table II: a property, how it is binned, and its number of categories."""

    name: str
    unit: str
    kind: str  # "category" (integer values 1..n) or "continuous" (n equal bins over [low, high])
    n_categories: int
    low: float = 0.0
    high: float = 0.0
    log: bool = False  # bin the natural logarithm of the value (Table II, note b)


#: Table II of the CGCNN supplement, in its order: 18 + 9 + 10 + 10 + 12 + 10 + 10 + 4 + 10 = 93 features.
ATOM_PROPERTIES: tuple[AtomProperty, ...] = (
    AtomProperty("group", "", "category", 18),
    AtomProperty("period", "", "category", 9),
    AtomProperty("electronegativity", "", "continuous", 10, 0.5, 4.0),
    AtomProperty("covalent_radius", "pm", "continuous", 10, 25.0, 250.0),
    AtomProperty("valence_electrons", "", "category", 12),
    AtomProperty("first_ionization_energy", "eV", "continuous", 10, 1.3, 3.3, log=True),
    AtomProperty("electron_affinity", "eV", "continuous", 10, -3.0, 3.7),
    AtomProperty("block", "", "category", 4),
    AtomProperty("atomic_volume", "cm^3/mol", "continuous", 10, 1.5, 4.3, log=True),
)

_BLOCKS = {"s": 1, "p": 2, "d": 3, "f": 4}
_SUBSHELL = re.compile(r"(\d+)([spdf])(\d+)")


def _valence_electrons(symbol: str, block: str, electronic_structure: str) -> int:
    """Electrons outside the noble-gas core, not counting filled inner d10/f14 subshells.

    Gives the group number for s- and d-block elements, group - 10 for the p block, and is
    clamped to the 12 categories of Table II for f-block elements.
    """
    count = 0
    for _n, shell, electrons in _SUBSHELL.findall(electronic_structure.split("]")[-1]):
        electrons = int(electrons)
        if shell == "f" and electrons == 14 and block in "dp":
            continue
        if shell == "d" and electrons == 10 and block == "p":
            continue
        count += electrons
    return int(min(max(count, 1), 12))


@cache
def element_properties(atomic_number: int) -> dict[str, float]:
    """The raw Table II properties of one element (NaN where pymatgen has no value)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    element = Element.from_Z(atomic_number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for noble gases without electronegativity
        electronegativity = float(element.X)
        ionization = element.ionization_energies
        affinity = element.electron_affinity
        molar_volume = element.molar_volume
    if 57 <= atomic_number <= 71:
        period = 8
    elif 89 <= atomic_number <= 103:
        period = 9
    else:
        period = int(element.row)
    block = str(element.block)
    return {
        "group": float(element.group),
        "period": float(period),
        "electronegativity": electronegativity,
        "covalent_radius": 100.0 * CovalentRadius.radius.get(element.symbol, math.nan),
        "valence_electrons": float(_valence_electrons(element.symbol, block, element.electronic_structure)),
        "first_ionization_energy": float(ionization[0]) if ionization and ionization[0] else math.nan,
        "electron_affinity": math.nan if affinity is None else float(affinity),
        "block": float(_BLOCKS[block]),
        "atomic_volume": math.nan if molar_volume is None else float(molar_volume),
    }


def _one_hot(prop: AtomProperty, value: float) -> np.ndarray:
    vector = np.zeros(prop.n_categories, dtype=np.float32)
    if not math.isfinite(value):
        return vector  # a missing property leaves its block empty
    if prop.kind == "category":
        vector[int(value) - 1] = 1.0
        return vector
    if prop.log:
        if value <= 0:
            return vector
        value = math.log(value)
    width = (prop.high - prop.low) / prop.n_categories
    index = math.floor((value - prop.low) / width)
    vector[min(max(index, 0), prop.n_categories - 1)] = 1.0  # out-of-range values go to the end bins
    return vector


def encode_element(atomic_number: int, properties: tuple[AtomProperty, ...] = ATOM_PROPERTIES) -> np.ndarray:
    """The one-hot feature vector of one element for the given Table II properties."""
    raw = element_properties(atomic_number)
    return np.concatenate([_one_hot(prop, raw[prop.name]) for prop in properties])


@lru_cache(maxsize=8)
def _cached_table(names: tuple[str, ...]) -> np.ndarray:
    properties = tuple(p for p in ATOM_PROPERTIES if p.name in names)
    dim = sum(p.n_categories for p in properties)
    table = np.zeros((MAX_ATOMIC_NUMBER + 1, dim), dtype=np.float32)
    for z in range(1, MAX_ATOMIC_NUMBER + 1):
        table[z] = encode_element(z, properties)
    return table


def atom_feature_table(properties: tuple[str, ...] | None = None) -> torch.Tensor:
    """Feature table indexed by atomic number: row Z is the encoding of element Z (row 0 unused).

    Parameters
    ----------
    properties
        Names from :data:`ATOM_PROPERTIES` to include, in Table II order; all nine by default.
    """
    known = [p.name for p in ATOM_PROPERTIES]
    names = tuple(known) if properties is None else tuple(properties)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown atom properties {unknown}; choose from {known}")
    return torch.from_numpy(_cached_table(tuple(n for n in known if n in names)).copy())


class GaussianExpansion(torch.nn.Module):
    """Gaussian expansion of distances: exp(-(d - mu_k)^2 / width^2), centres mu_k from dmin to dmax.

    With the reference's defaults (0 to 8 Å, step 0.2 Å, width = step) this gives 41 features.
    """

    centers: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, dmin: float = 0.0, dmax: float = 8.0, step: float = 0.2, width: float | None = None):
        super().__init__()
        n = round((dmax - dmin) / step) + 1
        self.register_buffer("centers", torch.linspace(dmin, dmax, n), persistent=False)
        self.width = float(step if width is None else width)

    @property
    def out_features(self) -> int:
        return int(self.centers.numel())

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        exponent = -((distances.unsqueeze(-1) - self.centers) ** 2) / self.width**2
        # values below e^-60 become exact zeros: float32 denormals slow CPU matrix products ~4x
        return torch.exp(exponent.clamp(min=-60.0)).masked_fill(exponent < -60.0, 0.0)
