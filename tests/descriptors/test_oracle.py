"""Every descriptor against matminer and pymatgen, the oracle, on real structures of ../shared/data.

matminer runs exactly the featurizers the paper used. The only change is a cache in front of
pymatgen's ``VoronoiNN.get_nn_info``, so that its three site featurizers share one tessellation per
site (matminer would tessellate each site three times); the neighbours, weights and statistics are
matminer's own. Tolerance: relative 1e-6; absolute 1e-9 for the descriptors that are exactly zero in
exact arithmetic (e.g. the spread of equal bond lengths), where both sides hold round-off of 1e-16.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aiida_cgcnn.descriptors import ALL_DESCRIPTORS, CRYSTAL_SYSTEMS, DescriptorSettings, compute_descriptors
from tests.descriptors.helpers import phonondb_slice

pytestmark = [pytest.mark.data, pytest.mark.slow]

SH_NAMES = [
    "MAD_in_rela_bond_len",
    "max_rela_bond_len",
    "min_rela_bond_len",
    "min_neighb_dist_var",
    "max_neighb_dist_var",
    "range_neighb_dist_var",
    "mean_neighb_dist_var",
    "dev_neighb_dist_var",
    "MAD_in_rela_atom_vol",
]


def matminer_values(structure, tol: float) -> dict[str, float]:
    """The paper's descriptors as matminer/pymatgen compute them; ``tol`` is VoronoiNN's face tolerance."""
    from matminer.featurizers.site import AverageBondAngle, AverageBondLength, CoordinationNumber
    from matminer.featurizers.structure import (
        DensityFeatures,
        GlobalSymmetryFeatures,
        SiteStatsFingerprint,
        StructuralComplexity,
        StructuralHeterogeneity,
    )
    from pymatgen.core.local_env import VoronoiNN

    class SharedVoronoiNN(VoronoiNN):
        def __init__(self):
            super().__init__(tol=tol)
            self._cache = {}

        def get_nn_info(self, structure, n):
            if n not in self._cache:
                self._cache[n] = super().get_nn_info(structure, n)
            return self._cache[n]

    voronoi = SharedVoronoiNN()
    out = dict(zip(SH_NAMES, StructuralHeterogeneity().featurize(structure), strict=True))
    out["mean_avg_bond_len"], out["std_avg_bond_len"] = SiteStatsFingerprint(
        AverageBondLength(voronoi)
    ).featurize(structure)
    out["mean_avg_bond_ang"], out["std_avg_bond_ang"] = SiteStatsFingerprint(
        AverageBondAngle(voronoi)
    ).featurize(structure)
    out["mean_CN_Voronoi"], out["std_CN_Voronoi"] = SiteStatsFingerprint(
        CoordinationNumber(voronoi, use_weights="none")
    ).featurize(structure)
    out["density"], out["vpa"], out["packing_frac"] = DensityFeatures().featurize(structure)
    out["struct_comp_atom"], out["struct_comp_cell"] = StructuralComplexity().featurize(structure)
    number, system = GlobalSymmetryFeatures(["spacegroup_num", "crystal_system"]).featurize(structure)
    out["space_group_num"], out["crys_sys"] = number, CRYSTAL_SYSTEMS.index(system) + 1
    primitive = structure.get_primitive_structure()
    niggli = primitive.lattice.get_niggli_reduced_lattice()
    out["natoms"] = len(primitive)
    out["a"], out["b"], out["c"] = sorted(niggli.abc, reverse=True)
    out["alpha"], out["beta"], out["gamma"] = sorted(niggli.angles, reverse=True)
    return out


@pytest.fixture(scope="module")
def sample(shared_data):
    """56 stable phonondb crystals of up to 16 atoms, spread over the file (every 7th)."""
    pytest.importorskip("matminer")
    return phonondb_slice(shared_data, n=56, max_atoms=16, stride=7)


def test_every_descriptor_agrees_with_matminer(sample):
    crystals = list(sample.crystals())
    settings = DescriptorSettings()
    table = compute_descriptors(crystals, list(ALL_DESCRIPTORS), settings, workers=1)
    assert not table.failures and len(crystals) >= 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = [matminer_values(c.to_pymatgen(), settings.face_tol) for c in crystals]
    reference = np.array([[values[n] for n in ALL_DESCRIPTORS] for values in oracle])
    close = np.isclose(table.values, reference, rtol=1e-6, atol=1e-9)
    disagreements = [
        (crystals[i].id, ALL_DESCRIPTORS[j], table.values[i, j], reference[i, j])
        for i, j in zip(*np.nonzero(~close), strict=True)
    ]
    assert not disagreements, disagreements[:10]
    # the sample is not trivial: several crystal systems, coordination numbers and cell sizes
    assert len(set(reference[:, ALL_DESCRIPTORS.index("crys_sys")])) >= 4
    assert np.ptp(reference[:, ALL_DESCRIPTORS.index("mean_CN_Voronoi")]) > 4
