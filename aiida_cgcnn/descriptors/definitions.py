"""The descriptors of the hybridization paper (Gong et al. 2023, Table 3), their names and settings.

Each descriptor is defined as matminer/pymatgen compute it with the featurizers the paper used;
:mod:`aiida_cgcnn.descriptors.engine` reproduces those values without calling them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "ALL_DESCRIPTORS",
    "CRYSTAL_SYSTEMS",
    "DEFAULT_DESCRIPTORS",
    "DESCRIPTORS",
    "GLOBAL_DESCRIPTORS",
    "LOCAL_DESCRIPTORS",
    "Descriptor",
    "DescriptorSettings",
    "descriptor_columns",
    "resolve_names",
]


@dataclass(frozen=True)
class Descriptor:
    """One descriptor: the paper's name, where its definition comes from, and its unit."""

    name: str
    kind: str  # "local" or "global"
    unit: str
    source: str  # the matminer/pymatgen feature it reproduces
    description: str


_SH = "matminer StructuralHeterogeneity()"
_ABL = "matminer SiteStatsFingerprint(AverageBondLength(VoronoiNN()))"
_ABA = "matminer SiteStatsFingerprint(AverageBondAngle(VoronoiNN()))"
_CN = "matminer SiteStatsFingerprint(CoordinationNumber.from_preset('VoronoiNN'))"
_NIGGLI = "pymatgen Structure.get_primitive_structure().lattice.get_niggli_reduced_lattice()"

#: Every descriptor, local first, in the order of the columns this package writes.
DESCRIPTORS: tuple[Descriptor, ...] = (
    Descriptor(
        "MAD_in_rela_bond_len",
        "local",
        "",
        _SH,
        "mean absolute deviation of the sites' relative average bond lengths",
    ),
    Descriptor("max_rela_bond_len", "local", "", _SH, "largest relative average bond length"),
    Descriptor("min_rela_bond_len", "local", "", _SH, "smallest relative average bond length"),
    Descriptor(
        "min_neighb_dist_var", "local", "", _SH, "minimum over sites of the neighbour distance variation"
    ),
    Descriptor(
        "max_neighb_dist_var", "local", "", _SH, "maximum over sites of the neighbour distance variation"
    ),
    Descriptor(
        "range_neighb_dist_var", "local", "", _SH, "range over sites of the neighbour distance variation"
    ),
    Descriptor(
        "mean_neighb_dist_var", "local", "", _SH, "mean over sites of the neighbour distance variation"
    ),
    Descriptor(
        "dev_neighb_dist_var",
        "local",
        "",
        _SH,
        "mean absolute deviation over sites of the neighbour distance variation (matminer's avg_dev)",
    ),
    Descriptor(
        "MAD_in_rela_atom_vol",
        "local",
        "",
        _SH,
        "mean absolute deviation of the Voronoi cell volumes divided by their mean",
    ),
    Descriptor(
        "mean_avg_bond_len", "local", "Å", _ABL, "mean over sites of the solid-angle-weighted bond length"
    ),
    Descriptor(
        "std_avg_bond_len", "local", "Å", _ABL, "standard deviation over sites of the average bond length"
    ),
    Descriptor(
        "mean_avg_bond_ang",
        "local",
        "rad",
        _ABA,
        "mean over sites of the average smallest angle between Voronoi neighbours",
    ),
    Descriptor(
        "std_avg_bond_ang", "local", "rad", _ABA, "standard deviation over sites of the average bond angle"
    ),
    Descriptor("mean_CN_Voronoi", "local", "", _CN, "mean Voronoi coordination number"),
    Descriptor("std_CN_Voronoi", "local", "", _CN, "standard deviation of the Voronoi coordination number"),
    Descriptor("density", "global", "g/cm^3", "matminer DensityFeatures()", "mass density"),
    Descriptor("vpa", "global", "Å^3/atom", "matminer DensityFeatures()", "volume per atom"),
    Descriptor(
        "packing_frac",
        "global",
        "",
        "matminer DensityFeatures()",
        "packing fraction with pymatgen's atomic radii",
    ),
    Descriptor(
        "struct_comp_atom",
        "global",
        "bits/atom",
        "matminer StructuralComplexity(symprec=0.1)",
        "Shannon entropy of the symmetry-equivalent site classes",
    ),
    Descriptor(
        "struct_comp_cell",
        "global",
        "bits/cell",
        "matminer StructuralComplexity(symprec=0.1)",
        "struct_comp_atom times the number of atoms of the given cell",
    ),
    Descriptor(
        "natoms",
        "global",
        "",
        "pymatgen Structure.get_primitive_structure()",
        "number of atoms of the primitive cell",
    ),
    Descriptor("a", "global", "Å", _NIGGLI, "largest lattice length of the Niggli-reduced primitive cell"),
    Descriptor("b", "global", "Å", _NIGGLI, "middle lattice length of the Niggli-reduced primitive cell"),
    Descriptor("c", "global", "Å", _NIGGLI, "smallest lattice length of the Niggli-reduced primitive cell"),
    Descriptor(
        "alpha", "global", "deg", _NIGGLI, "largest lattice angle of the Niggli-reduced primitive cell"
    ),
    Descriptor("beta", "global", "deg", _NIGGLI, "middle lattice angle of the Niggli-reduced primitive cell"),
    Descriptor(
        "gamma", "global", "deg", _NIGGLI, "smallest lattice angle of the Niggli-reduced primitive cell"
    ),
    Descriptor(
        "crys_sys",
        "global",
        "",
        "matminer GlobalSymmetryFeatures() crystal_system_int",
        "crystal system, 1 cubic, 2 hexagonal, 3 trigonal, 4 tetragonal, 5 orthorhombic, "
        "6 monoclinic, 7 triclinic (one-hot for models)",
    ),
    Descriptor(
        "space_group_num",
        "global",
        "",
        "matminer GlobalSymmetryFeatures() spacegroup_num",
        "international space group number (not hybridized by default, as in the paper)",
    ),
)

_BY_NAME = {d.name: d for d in DESCRIPTORS}
ALL_DESCRIPTORS: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS)
LOCAL_DESCRIPTORS: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS if d.kind == "local")
GLOBAL_DESCRIPTORS: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS if d.kind == "global")
#: The 28 descriptors the paper hybridizes: all but the space-group number.
DEFAULT_DESCRIPTORS: tuple[str, ...] = tuple(n for n in ALL_DESCRIPTORS if n != "space_group_num")

#: matminer's ``GlobalSymmetryFeatures.crystal_idx`` order: crys_sys value k is CRYSTAL_SYSTEMS[k - 1].
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "cubic",
    "hexagonal",
    "trigonal",
    "tetragonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)


def descriptor(name: str) -> Descriptor:
    return _BY_NAME[name]


def resolve_names(spec: str | Sequence[str] | None) -> list[str]:
    """Descriptor names from ``"all"`` (the paper's 28), ``"local"``, ``"global"``, a comma-separated
    string or a list; order follows :data:`DESCRIPTORS`.

    Raises
    ------
    ValueError
        Naming the unknown descriptors and listing the known ones.
    """
    if spec is None or spec == "all":
        return list(DEFAULT_DESCRIPTORS)
    if spec == "local":
        return list(LOCAL_DESCRIPTORS)
    if spec == "global":
        return [n for n in GLOBAL_DESCRIPTORS if n != "space_group_num"]
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown descriptors {unknown}; choose from {list(ALL_DESCRIPTORS)} or all/local/global"
        )
    if not names:
        raise ValueError("no descriptors named")
    return [n for n in ALL_DESCRIPTORS if n in set(names)]


def descriptor_columns(names: list[str] | tuple[str, ...]) -> list[str]:
    """Model input columns of the descriptors ``names``: ``crys_sys`` becomes seven one-hot columns
    ``crys_sys=cubic`` ... ``crys_sys=triclinic``; every other descriptor is one column."""
    columns: list[str] = []
    for name in names:
        if name == "crys_sys":
            columns += [f"crys_sys={system}" for system in CRYSTAL_SYSTEMS]
        else:
            columns.append(name)
    return columns


@dataclass(frozen=True)
class DescriptorSettings:
    """Every setting that changes a descriptor value; stored with datasets and checkpoints.

    The defaults are those of the featurizers the paper used.

    Attributes
    ----------
    face_tol
        Voronoi faces whose solid angle is at most ``face_tol`` times the cell's largest are not
        neighbours. 0 is pymatgen's ``VoronoiNN`` default, which also counts the faces of (nearly)
        zero area that Qhull leaves where neighbours are (nearly) cospherical, with relative solid
        angles of 1e-20 to 1e-14: they add to the coordination numbers and enter the bond angles,
        as in the paper's values. 1e-13 drops them and keeps every face with a weight that a rigid
        translation of the crystal reproduces.
    symprec, angle_tolerance
        spglib tolerances for the space group and crystal system (``SpacegroupAnalyzer`` defaults).
    complexity_symprec
        spglib tolerance for the structural complexity (``StructuralComplexity`` default 0.1).
    primitive_tolerance
        Site tolerance of ``Structure.get_primitive_structure``, Å.
    """

    face_tol: float = 0.0
    symprec: float = 0.01
    angle_tolerance: float = 5.0
    complexity_symprec: float = 0.1
    primitive_tolerance: float = 0.25

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> DescriptorSettings:
        data = data or {}
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})
