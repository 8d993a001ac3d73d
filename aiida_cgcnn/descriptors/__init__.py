"""The human-designed descriptors of the hybridization paper (Gong et al., Sci. Adv. 2023, Table 3).

Fast and exact: one Voronoi tessellation per crystal gives the 15 local descriptors, spglib and a
Niggli reduction the 14 global ones, each defined as the matminer/pymatgen featurizers the paper
used compute it (see :mod:`~aiida_cgcnn.descriptors.definitions`).
"""

from .definitions import (
    ALL_DESCRIPTORS,
    CRYSTAL_SYSTEMS,
    DEFAULT_DESCRIPTORS,
    DESCRIPTORS,
    GLOBAL_DESCRIPTORS,
    LOCAL_DESCRIPTORS,
    Descriptor,
    DescriptorSettings,
    descriptor_columns,
    resolve_names,
)
from .engine import DescriptorTable, compute_descriptors, crystal_descriptors, to_columns

__all__ = [
    "ALL_DESCRIPTORS",
    "CRYSTAL_SYSTEMS",
    "DEFAULT_DESCRIPTORS",
    "DESCRIPTORS",
    "GLOBAL_DESCRIPTORS",
    "LOCAL_DESCRIPTORS",
    "Descriptor",
    "DescriptorSettings",
    "DescriptorTable",
    "compute_descriptors",
    "crystal_descriptors",
    "descriptor_columns",
    "resolve_names",
    "to_columns",
]
