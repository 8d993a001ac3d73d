"""``cgcnn.screen`` with verification: the best and the most uncertain candidates of a screen with
the shipped ``phonons-300K`` ensemble go to ``cgcnn.phonon_comparison`` with EMT phonopy references."""

from __future__ import annotations

import math

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_cgcnn.calculations.functions.screen import read_screening_table
from aiida_cgcnn.pretrained.registry import available
from aiida_cgcnn.workflows.phonon_comparison import PhononComparisonWorkChain
from aiida_cgcnn.workflows.screen import ScreenWorkChain

EMT = {"calculator": "ase.calculators.emt.EMT"}
SMALL = {"supercell_matrix": [3, 3, 3], "mesh": 10.0, "gamma_acoustic": "exclude"}
METALS = {"Cu": 3.61, "Al": 4.05, "Ni": 3.52, "Ag": 4.09, "Au": 4.08}


@pytest.fixture
def model_name():
    if "phonons-300K" not in available():
        pytest.skip("the pretrained model 'phonons-300K' is not installed")
    return "phonons-300K"


@pytest.mark.slow  # about 45 s: the screen, then two EMT phonopy references and their comparison
def test_the_top_and_the_most_uncertain_candidates_are_verified_with_emt(cgcnn_code, model_name):
    structures = {
        f"s{k}_{symbol}": orm.StructureData(ase=bulk(symbol, "fcc", a=a)).store()
        for k, (symbol, a) in enumerate(METALS.items())
    }
    builder = ScreenWorkChain.get_builder()
    builder.code = cgcnn_code
    builder.structures = structures
    builder.pretrained = orm.Str(model_name)
    builder.criterion = orm.Dict({"target": "Cv", "direction": "max", "top_k": 2})
    builder.verify.reference.engine = orm.Dict(EMT)
    builder.verify.reference.phonopy = orm.Dict(SMALL)
    builder.verify.reference.temperatures = orm.List([300.0])
    builder.verify_count = orm.Int(1)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    _, _, rows = read_screening_table(results["table"])
    assert [r["uuid"] for r in rows] == [n.uuid for n in structures.values()]

    # the candidates: rank 1, and the largest spread of Cv among the others
    best = next(r for r in rows if r["rank"] == 1)
    others = [r for r in rows if r["pk"] != best["pk"]]
    uncertain = max(others, key=lambda r: (r["Cv_std"], -r["position"]))
    assert all(not math.isnan(r["Cv_std"]) and r["Cv_std"] > 0 for r in rows)
    labels = {f"top1_pk{best['pk']}", f"uncertain1_pk{uncertain['pk']}"}

    (verification,) = [c for c in node.called if c.process_class is PhononComparisonWorkChain]
    assert verification.is_finished_ok
    assert set(verification.inputs.structures) == labels
    assert verification.inputs.model.uuid == results["model"].uuid  # the screen's ensemble
    comparison = results["verification"]["comparison"].get_dict()
    assert set(comparison["compared"]) == labels
    assert results["verification"]["parity_plot"].get_content(mode="rb")[:4] == b"\x89PNG"
    # the comparison's predictions are the table's (one-atom primitive cells either way)
    for row in (best, uncertain):
        label = f"{'top1' if row is best else 'uncertain1'}_pk{row['pk']}"
        predicted = results["verification"]["predictions"][label].get_dict()
        assert predicted["Cv_JKmol"] == pytest.approx(row["Cv"], rel=1e-5)
        assert predicted["U_kJmol"] == pytest.approx(row["U"], rel=1e-5)
        reference = results["verification"]["references"][label].get_dict()
        assert 0 < reference["Cv_JKmol"][0] < 25.0  # EMT, one atom per cell: below 3R
