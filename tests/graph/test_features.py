"""Table II atom features (CGCNN supplement) and the Gaussian distance expansion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aiida_cgcnn.graph.features import (
    ATOM_PROPERTIES,
    MAX_ATOMIC_NUMBER,
    GaussianExpansion,
    atom_feature_table,
    element_properties,
    encode_element,
)

# column offsets of each Table II property in the 93-column table
OFFSETS = dict(
    zip(
        [p.name for p in ATOM_PROPERTIES],
        np.cumsum([0] + [p.n_categories for p in ATOM_PROPERTIES])[:-1],
        strict=True,
    )
)
SIZES = {p.name: p.n_categories for p in ATOM_PROPERTIES}


def block(table: torch.Tensor | np.ndarray, z: int, name: str) -> np.ndarray:
    row = np.asarray(table[z])
    return row[OFFSETS[name] : OFFSETS[name] + SIZES[name]]


@pytest.fixture(scope="module")
def table():
    return atom_feature_table()


def test_supplement_example_hydrogen_group_and_period():
    # "if we use the group number and period number as atom features, the atom feature vector for H
    # will be a 27-dimensional vector with 1st and 19th element being 1 and other elements being 0"
    vector = encode_element(1, ATOM_PROPERTIES[:2])
    assert vector.shape == (27,)
    expected = np.zeros(27)
    expected[[0, 18]] = 1
    np.testing.assert_array_equal(vector, expected)


def test_table_has_the_93_columns_of_table_ii(table):
    assert [p.n_categories for p in ATOM_PROPERTIES] == [18, 9, 10, 10, 12, 10, 10, 4, 10]
    assert table.shape == (MAX_ATOMIC_NUMBER + 1, 93)
    assert table.dtype == torch.float32
    assert not table[0].any(), "row 0 (no element) must stay empty"


def test_subset_of_properties_is_the_matching_columns(table):
    sub = atom_feature_table(("group", "period"))
    assert sub.shape == (MAX_ATOMIC_NUMBER + 1, 27)
    torch.testing.assert_close(sub, table[:, :27], rtol=0, atol=0)
    three = atom_feature_table(("group", "period", "electronegativity"))
    torch.testing.assert_close(three, table[:, :37], rtol=0, atol=0)


def test_unknown_property_is_rejected():
    with pytest.raises(ValueError, match="unknown atom properties"):
        atom_feature_table(("group", "colour"))


@pytest.mark.parametrize("z", [57, 58, 63, 71])
def test_lanthanides_are_period_8(table, z):
    assert element_properties(z)["period"] == 8
    assert block(table, z, "period").argmax() == 7


@pytest.mark.parametrize("z", [89, 90, 92, 94, 100])
def test_actinides_are_period_9(table, z):
    assert element_properties(z)["period"] == 9
    assert block(table, z, "period").argmax() == 8


@pytest.mark.parametrize("z, period", [(1, 1), (6, 2), (26, 4), (56, 6), (72, 6), (82, 6), (88, 7)])
def test_other_elements_keep_their_row(table, z, period):
    assert block(table, z, "period").argmax() == period - 1


# Hand calculations from the Table II ranges; bin = floor((x - low) / ((high - low) / 10)), natural
# log first for the ionisation energy and the atomic volume.
@pytest.mark.parametrize(
    "z, name, raw, expected_bin",
    [
        (8, "electronegativity", 3.44, 8),  # (3.44 - 0.5) / 0.35 = 8.4
        (1, "electronegativity", 2.20, 4),  # (2.20 - 0.5) / 0.35 = 4.86
        (55, "electronegativity", 0.79, 0),  # (0.79 - 0.5) / 0.35 = 0.83
        (55, "first_ionization_energy", 3.894, 0),  # ln 3.894 = 1.359; (1.359 - 1.3) / 0.2 = 0.30
        (8, "first_ionization_energy", 13.618, 6),  # ln 13.618 = 2.611; (2.611 - 1.3) / 0.2 = 6.56
        (26, "covalent_radius", 142.0, 5),  # (142 - 25) / 22.5 = 5.2
        (55, "covalent_radius", 244.0, 9),  # (244 - 25) / 22.5 = 9.7
        (11, "electron_affinity", 0.548, 5),  # (0.548 + 3) / 0.67 = 5.30
        (8, "atomic_volume", 17.36, 4),  # ln 17.36 = 2.854; (2.854 - 1.5) / 0.28 = 4.84
    ],
)
def test_binning_matches_hand_calculation(table, z, name, raw, expected_bin):
    assert element_properties(z)[name] == pytest.approx(raw, rel=2e-3)
    one_hot = block(table, z, name)
    assert one_hot.sum() == 1
    assert one_hot.argmax() == expected_bin


def test_out_of_range_values_go_to_the_end_bins(table):
    # Fr's covalent radius, 260 pm, is above the 250 pm top of the range: last bin, not dropped
    assert element_properties(87)["covalent_radius"] == pytest.approx(260.0)
    assert block(table, 87, "covalent_radius").argmax() == 9
    # B's atomic volume, 4.39 cm^3/mol, has ln 1.479 below the 1.5 bottom of the range: first bin
    assert math.log(element_properties(5)["atomic_volume"]) < 1.5
    assert block(table, 5, "atomic_volume").argmax() == 0
    # values at the very top of a range land in the last bin too (F: (3.98 - 0.5) / 0.35 = 9.94)
    assert block(table, 9, "electronegativity").argmax() == 9


@pytest.mark.parametrize(
    "symbol, z, valence",
    [
        ("Na", 11, 1),
        ("Fe", 26, 8),
        ("Zn", 30, 12),
        ("Ga", 31, 3),
        ("O", 8, 6),
        ("Cl", 17, 7),
        ("Pb", 82, 4),
        ("H", 1, 1),
    ],
)
def test_valence_electrons(table, symbol, z, valence):
    assert element_properties(z)["valence_electrons"] == valence, symbol
    assert block(table, z, "valence_electrons").argmax() == valence - 1


@pytest.mark.parametrize("z, block_index", [(11, 0), (8, 1), (26, 2), (64, 3)])
def test_block(table, z, block_index):
    assert block(table, z, "block").argmax() == block_index


def test_every_element_has_one_hot_entry_per_property_with_data(table):
    categories_with_data = 0
    for z in range(1, MAX_ATOMIC_NUMBER + 1):
        raw = element_properties(z)
        for prop in ATOM_PROPERTIES:
            one_hot = block(table, z, prop.name)
            assert set(np.unique(one_hot)) <= {0.0, 1.0}
            value = raw[prop.name]
            has_data = math.isfinite(value) and not (prop.log and value <= 0)
            assert one_hot.sum() == (1 if has_data else 0), (z, prop.name, value)
            categories_with_data += has_data
    # the categorical properties are known for every element
    for z in range(1, MAX_ATOMIC_NUMBER + 1):
        for name in ("group", "period", "valence_electrons", "block"):
            assert block(table, z, name).sum() == 1, (z, name)
    # and nearly everything else too (the few gaps are noble-gas electronegativities and the like)
    assert categories_with_data >= 0.98 * MAX_ATOMIC_NUMBER * len(ATOM_PROPERTIES)


def test_distinct_elements_have_distinct_features(table):
    rows = {tuple(table[z].tolist()) for z in range(1, MAX_ATOMIC_NUMBER + 1)}
    assert len(rows) > 90


def test_gaussian_expansion_reference_defaults():
    expansion = GaussianExpansion()
    assert expansion.out_features == 41  # 0 to 8 A in steps of 0.2 A
    distances = torch.tensor([0.0, 2.0, 3.1])
    u = expansion(distances)
    assert u.shape == (3, 41)
    # each distance peaks at its nearest centre, with value exp(-(d - mu)^2 / 0.2^2)
    assert u[0].argmax() == 0 and u[1].argmax() == 10
    torch.testing.assert_close(u[1, 10], torch.tensor(1.0))
    torch.testing.assert_close(u[2, 15], torch.exp(torch.tensor(-(0.1**2) / 0.04)))
    torch.testing.assert_close(u[2, 16], torch.exp(torch.tensor(-(0.1**2) / 0.04)))
