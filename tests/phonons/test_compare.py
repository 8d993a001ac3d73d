"""Which model targets are U and Cv (names, temperatures, units), the metrics and the parity plot."""

from __future__ import annotations

import pytest

from aiida_cgcnn.phonons.compare import compare_values, find_phonon_target, parity_plot_png
from aiida_cgcnn.phonons.errors import PhononInputError


def test_targets_are_found_by_name_and_unit():
    u = find_phonon_target("U", ["U", "Cv"], ["kJ/mol", "J/(K mol)"])
    cv = find_phonon_target("Cv", ["U", "Cv"], ["kJ/mol", "J/(K·mol)"])
    assert (u.index, u.temperature_k, cv.index) == (0, None, 1)
    names = ["U_300K", "Cv_300K", "U_600K", "Cv_600K"]
    units = ["kJ/mol", "J/(K mol)"] * 2
    assert find_phonon_target("Cv", names, units, temperature_k=600.0).index == 3
    assert find_phonon_target("U", ["phonon_internal_energy"], ["kJ/mol-cell"]).index == 0
    assert find_phonon_target("Cv", ["heat_capacity"], ["J/(mol-cell*K)"]).index == 0  # the paper's spelling
    with pytest.raises(PhononInputError, match="several U targets"):
        find_phonon_target("U", names, units)


def test_a_model_of_something_else_is_refused_by_name():
    with pytest.raises(PhononInputError, match=r"model 'emt' has no U target .* trained on \['emt_energy'\]"):
        find_phonon_target("U", ["emt_energy"], ["eV/atom"], model="model 'emt'")
    with pytest.raises(PhononInputError, match=r"unit 'eV'.*kJ/mol per mole of primitive cells"):
        find_phonon_target("U", ["U"], ["eV"], model="m")
    with pytest.raises(PhononInputError, match="per mole of atoms"):
        find_phonon_target("Cv", ["Cv"], ["J/(mol-atom*K)"], model="m")


def test_metrics():
    result = compare_values(["a", "b", "c"], [1.0, 2.0, 3.0], [1.0, 2.5, 4.0])
    assert result["mae"] == pytest.approx(0.5) and result["mad"] == pytest.approx(2 / 3)
    assert result["mae_over_mad"] == pytest.approx(0.75)
    assert result["max_abs_error"] == 1.0 and result["max_error_structure"] == "c"
    assert result["per_structure"]["b"] == {"reference": 2.0, "predicted": 2.5, "error": 0.5}
    assert compare_values([], [], [])["mae"] is None
    assert compare_values(["a"], [1.0], [2.0])["mae_over_mad"] is None  # one value has no spread


def test_parity_plot_is_a_png():
    png = parity_plot_png(
        {
            "U": {"reference": [1, 2, 3], "predicted": [1.1, 2.0, 2.9], "mae": 0.07, "mae_over_mad": 0.1},
            "Cv": {"reference": [20, 40], "predicted": [21, 39]},
        },
        title="test",
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert parity_plot_png({"U": {"reference": [], "predicted": []}})[:4] == b"\x89PNG"


def test_parity_figure_labels_points_gives_units_and_lists_the_excluded():
    from aiida_cgcnn.phonons.compare import parity_figure

    figure = parity_figure(
        {
            "U": {
                "reference": [1.0, 2.0],
                "predicted": [1.1, 2.0],
                "labels": ["Cu_p0", "Ni3Al_p0"],
                "mae": 0.05,
                "mae_over_mad": 0.1,
            },
            "Cv": {
                "reference": [20.0, 40.0],
                "predicted": [21.0, 39.0],
                "labels": ["Cu_p0", "Ni3Al_p0"],
                "mae": 1.0,
            },
        },
        title="EMT at 300 K",
        excluded={
            "Cu_bcc": "imaginary modes: lowest frequency -3.1 THz is below -0.5 THz (dynamically unstable)"
        },
    )
    u_axes, cv_axes = figure.axes
    assert {t.get_text() for t in u_axes.texts} >= {"Cu_p0", "Ni3Al_p0"}
    assert any("MAE 0.05 kJ/mol" in t.get_text() for t in u_axes.texts)
    assert any("MAE 1 J/(K mol)" in t.get_text() for t in cv_axes.texts)
    notes = " ".join(t.get_text() for t in figure.texts)
    assert "left out Cu_bcc: imaginary modes" in notes
