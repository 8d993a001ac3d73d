"""``cgcnn.active_learning`` end to end on a real profile: EMT phonon references through
``cgcnn.phonon_reference``, members trained by the real ``aiida-cgcnn`` command on localhost through
``cgcnn.train``, ensembles from ``ensemble_from_models`` predicting with ``cgcnn.predict``."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from ase.build import bulk
from ase.calculators.emt import EMT

from aiida_cgcnn.calculations.functions import dataset_from_structures
from aiida_cgcnn.phonons import PhononSettings, calculate_phonons
from aiida_cgcnn.workflows.active_learning import ActiveLearningWorkChain

ENGINE = {"calculator": "ase.calculators.emt.EMT"}
#: 8-atom supercells of the one-atom cells, a coarse mesh: every fcc metal is stable, a reference is quick
PHONOPY = {"supercell_matrix": [2, 2, 2], "mesh": 8.0}
#: EMT's own fcc lattice constants (Å)
LATTICE = {"Cu": 3.59, "Ni": 3.52, "Al": 4.05, "Pd": 3.94, "Ag": 4.09, "Au": 4.08, "Pt": 3.94}


def _pool() -> dict[str, orm.StructureData]:
    """Seven fcc metals (primitive cells) and bcc Fe, which EMT does not know: its reference fails."""
    pool = {f"{m}_fcc": orm.StructureData(ase=bulk(m, "fcc", a=a)) for m, a in LATTICE.items()}
    pool["Fe_bcc"] = orm.StructureData(ase=bulk("Fe", "bcc", a=2.87))
    return pool


def _validation() -> orm.Data:
    """Three strained metals with their EMT U and Cv at 300 K (computed here with the same settings)."""
    settings = PhononSettings.from_dict(PHONOPY)
    cells, values = [], []
    for metal, strain in (("Cu", 0.01), ("Ni", -0.01), ("Ag", 0.01)):
        record = calculate_phonons(
            bulk(metal, "fcc", a=LATTICE[metal] * (1 + strain)), EMT(), [300.0], settings
        )
        cells.append(orm.StructureData(ase=record.to_atoms()).store())
        values.append([record.properties.internal_energy_kjmol[0], record.properties.heat_capacity_jkmol[0]])
    return dataset_from_structures(cells, values, ["U", "Cv"], ["kJ/mol", "J/(K mol)"])


def _builder(code, small_model, **inputs):
    builder = ActiveLearningWorkChain.get_builder()
    builder.reference_inputs = {"engine": orm.Dict(ENGINE), "phonopy": orm.Dict(PHONOPY)}
    builder.training.train.code = code
    parameters = {
        "model": small_model,
        "train": {"epochs": 3, "batch_size": 4, "train_ratio": 0.75, "val_ratio": 0.25, "test_ratio": 0.0},
    }
    builder.training.train.parameters = orm.Dict(parameters)
    builder.training.train.metadata.options.max_wallclock_seconds = 600
    builder.predict.code = code
    builder.predict.metadata.options.max_wallclock_seconds = 600
    for key, value in inputs.items():
        builder[key] = value
    return builder


def _datasets(final) -> list:
    """The chain of datasets the loop made, first to last, each the previous one plus references."""
    chain = [final]
    while "dataset" in chain[0].creator.inputs:
        chain.insert(0, chain[0].creator.inputs.dataset)
    return chain


@pytest.mark.slow
def test_emt_loop_grows_the_dataset_skips_a_failed_reference_and_records_the_curve(cgcnn_code, small_model):
    assert WorkflowFactory("cgcnn.active_learning") is ActiveLearningWorkChain
    pool, validation = _pool(), _validation()
    builder = _builder(
        cgcnn_code,
        small_model,
        pool=pool,
        validation=validation,
        seed_size=orm.Int(4),
        per_round=orm.Int(2),
        rounds=orm.Int(2),
        members=orm.Int(2),
        seed=orm.Int(3),
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results["summary"].get_dict()

    # every pool structure computed once (4 + 2 + 2 = the whole pool), Fe's failure reported and skipped
    references = [n for n in node.called if n.process_label == "PhononReferenceWorkChain"]
    assert len(references) == 8
    assert sorted(n.inputs.structure.uuid for n in references) == sorted(s.uuid for s in pool.values())
    assert sorted(summary["computed"]) == sorted(pool)
    assert list(summary["failed"]) == ["Fe_bcc"] and "forces" in summary["failed"]["Fe_bcc"]
    fe_round = summary["computed"]["Fe_bcc"]["round"]
    assert summary["stopped"] == "budget spent: 2 rounds"

    # the dataset grows by the batch each round (less Fe), each one linked to the one before and to the
    # primitive cells its references returned
    datasets = _datasets(results["dataset"])
    assert len(datasets) == 3
    sizes = [d.size for d in datasets]
    expected = np.cumsum([4, 2, 2]) - np.cumsum([fe_round == r for r in range(3)])
    assert sizes == expected.tolist()
    succeeded = {n.label: n for n in references if n.is_finished_ok}
    assert len(succeeded) == 7
    for r, dataset in enumerate(datasets):
        added = dict(dataset.creator.inputs.primitive_structures)
        assert sorted(added) == sorted(
            label for label, done in summary["computed"].items() if done["round"] == r and label != "Fe_bcc"
        )
        for label, structure in added.items():
            assert structure.uuid == succeeded[label].outputs.primitive_structure.uuid
            record = succeeded[label].outputs.thermal_properties
            row = list(dataset.get_dataset().ids).index(structure.uuid)
            assert dataset.get_dataset().targets[row].tolist() == pytest.approx(
                [record["U_kJmol"][0], record["Cv_JKmol"][0]], rel=1e-12
            )

    # one learning-curve row per trained ensemble (round 0 included); its errors are the validation's
    rows = list(csv.DictReader(io.StringIO(results["learning_curve"].get_content())))
    assert [int(r["round"]) for r in rows] == [0, 1, 2]
    assert [int(r["n_references"]) for r in rows] == [4, 6, 8]
    assert [int(r["n_training"]) for r in rows] == sizes
    assert [int(r["n_failed"]) for r in rows] == [int(fe_round <= r) for r in range(3)]
    # one prediction job per round: the pool not computed yet with the validation set; the last round
    # (no selection follows) the validation set alone
    predictions = sorted(
        (n for n in node.called if n.process_label == "PredictCalculation"), key=lambda n: n.ctime
    )
    assert [n.inputs.dataset.size for n in predictions] == [4 + 3, 2 + 3, 3]
    assert predictions[-1].inputs.dataset.uuid == validation.uuid
    for r, n in enumerate(predictions[:2]):  # before round r + 1: the structures computed from then on
        ids = set(n.inputs.dataset.get_dataset().ids.tolist())
        remaining = {s.uuid for label, s in pool.items() if summary["computed"][label]["round"] > r}
        assert ids == remaining | {f"validation:{i}" for i in validation.get_dataset().ids}
        # uncertainty: the next batch is the two largest spreads of U (the first target) per atom (one atom)
        output = n.outputs.predictions
        spread = {i: s for i, s in zip(output.get_array("ids"), output.get_array("std")[:, 0], strict=True)}
        ranked = sorted((u for u in remaining), key=lambda u: -spread[u])
        chosen = {s.uuid for label, s in pool.items() if summary["computed"][label]["round"] == r + 1}
        assert chosen == set(ranked[:2])
    final = predictions[-1].outputs.predictions
    data = validation.get_dataset()
    order = [list(data.ids).index(i) for i in final.get_array("ids")]
    for k, name in enumerate(["U", "Cv"]):
        error = np.abs(final.get_array("values")[:, k] - data.targets[order, k])
        assert float(rows[-1][f"{name}_mae"]) == pytest.approx(error.mean(), rel=1e-9)
        mad = np.abs(data.targets[:, k] - data.targets[:, k].mean()).mean()
        assert float(rows[-1][f"{name}_mae_over_mad"]) == pytest.approx(error.mean() / mad, rel=1e-9)
    assert results["learning_curve_plot"].get_content(mode="rb")[:8] == b"\x89PNG\r\n\x1a\n"

    # the final ensemble: the last round's two members, trained on the final dataset with different seeds
    ensemble, models = results["ensemble"], dict(results["models"])
    assert sorted(models) == ["m0", "m1"]
    assert ensemble.member_sha256 == [models["m0"].sha256, models["m1"].sha256]
    assert ensemble.targets == ["U", "Cv"] and ensemble.basis == ["primitive cell", "primitive cell"]
    trainings = [n for n in node.called if n.process_label == "TrainWorkChain"]
    assert len(trainings) == 6
    last_round = [n for n in trainings if n.inputs.train.dataset.uuid == results["dataset"].uuid]
    assert sorted(n.outputs.model.uuid for n in last_round) == sorted(m.uuid for m in models.values())
    seeds = {n.inputs.train.parameters["train"]["seed"] for n in last_round}
    assert len(seeds) == 2


def _launch_error(builder) -> str:
    """The message of the ValueError a launch raises: validation at the door, before anything runs
    (``builder``: a builder, or a function making one, as some ports validate on assignment)."""
    with pytest.raises(ValueError) as info:
        run_get_node(builder() if callable(builder) else builder)
    return str(info.value)


def test_bad_inputs_are_refused_at_the_door_with_clear_messages(
    aiida_profile, cgcnn_code, small_model, dataset_node
):
    pool = _pool()
    assert "exactly one of `pool`" in _launch_error(lambda: _builder(cgcnn_code, small_model))
    group = orm.Group(label="al-pool-test").store()
    group.add_nodes([s.store() for s in pool.values()])
    both = _builder(cgcnn_code, small_model, pool=pool, pool_group=orm.Str("al-pool-test"))
    assert "exactly one of `pool`" in _launch_error(both)
    missing = _builder(cgcnn_code, small_model, pool_group=orm.Str("no-such-group"))
    assert "pool_group: no single group 'no-such-group'" in _launch_error(missing)

    message = _launch_error(
        lambda: _builder(cgcnn_code, small_model, pool=pool, targets=orm.List(["U", "Z"]))
    )
    assert "targets ['U', 'Z']: distinct names among U, Cv, S, F" in message
    message = _launch_error(lambda: _builder(cgcnn_code, small_model, pool=pool, strategy=orm.Str("greedy")))
    assert "strategy 'greedy': use one of uncertainty, random, diverse" in message
    message = _launch_error(lambda: _builder(cgcnn_code, small_model, pool=pool, members=orm.Int(1)))
    assert "the uncertainty strategy needs a spread: give at least 2 `members`" in message
    message = _launch_error(lambda: _builder(cgcnn_code, small_model, pool=pool, dataset=dataset_node))
    assert f"dataset <{dataset_node.pk}> has no target 'U' (it has ['emt_energy'])" in message
    message = _launch_error(
        lambda: _builder(cgcnn_code, small_model, pool=pool, target_mae_over_mad=orm.Float(0.1))
    )
    assert "target_mae_over_mad needs a `validation` dataset" in message
    message = _launch_error(
        lambda: _builder(cgcnn_code, small_model, pool=pool, reference_workchain=orm.Str("cgcnn.train"))
    )
    assert "must take a `structure` and return `thermal_properties` and `primitive_structure`" in message
    builder = _builder(cgcnn_code, small_model, pool=pool)
    builder.reference_inputs["temperatures"] = orm.List([600.0])
    assert "reference_inputs.temperatures [600.0] lack the target temperature 300 K" in _launch_error(builder)
    builder = _builder(cgcnn_code, small_model, pool=pool, selection_target=orm.Str("S"))
    assert "selection_target 'S' is not among the targets ['U', 'Cv']" in _launch_error(builder)


def _table_cells(rows: list[dict]) -> list[orm.StructureData]:
    from pymatgen.core import Lattice, Structure

    cells = []
    for row in rows:
        cell = orm.StructureData(
            pymatgen=Structure(Lattice(row["lattice"]), row["species"], row["frac_coords"])
        )
        cell.label = row["mp_id"]
        cells.append(cell.store())
    return cells


def _table_dataset(rows: list[dict]) -> orm.Data:
    values = [[row["U_kJmol"], row["Cv_JKmol"]] for row in rows]
    return dataset_from_structures(_table_cells(rows), values, ["U", "Cv"], ["kJ/mol", "J/(K mol)"])


@pytest.mark.slow
@pytest.mark.data
def test_table_reference_loop_on_phonondb_fine_tunes_and_selects_a_diverse_batch(
    cgcnn_code, small_model, phonondb_table
):
    from aiida_cgcnn.selection import composition_features, select_batch

    _, table = phonondb_table
    stable = sorted(
        (r for r in table.values() if r["min_freq_THz"] >= -0.5 and r["natoms"] <= 4),
        key=lambda r: r["mp_id"],
    )
    rows = [stable[k] for k in np.random.default_rng(0).choice(len(stable), size=22, replace=False)]
    pool = {
        row["mp_id"].replace("-", "_"): cell
        for row, cell in zip(rows[:12], _table_cells(rows[:12]), strict=True)
    }
    initial, validation = _table_dataset(rows[12:16]), _table_dataset(rows[16:])

    # a stopping target any model meets: the initial ensemble is measured and nothing is computed
    builder = _builder(
        cgcnn_code, small_model, pool=pool, dataset=initial, validation=validation, members=orm.Int(2)
    )
    builder.reference_workchain = orm.Str("cgcnn.table_reference")
    builder.reference_inputs = {}
    builder.target_mae_over_mad = orm.Float(1e6)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert results["summary"]["stopped"].startswith("target reached in round 0")
    assert results["summary"]["n_references"] == 0 and results["dataset"].uuid == initial.uuid

    builder = _builder(
        cgcnn_code,
        small_model,
        pool=pool,
        dataset=initial,
        validation=validation,
        members=orm.Int(2),
        per_round=orm.Int(3),
        rounds=orm.Int(1),
        strategy=orm.Str("diverse"),
        fine_tune=orm.Bool(True),
        selection_target=orm.Str("Cv"),
    )
    builder.reference_workchain = orm.Str("cgcnn.table_reference")
    builder.reference_inputs = {}
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results["summary"].get_dict()
    chosen = sorted(label for label, done in summary["computed"].items() if done["round"] == 1)
    assert len(chosen) == 3 and summary["stopped"] == "budget spent: 1 rounds"

    # the batch is the diverse selection from round 0's predicted Cv spread per atom
    predictions = sorted(
        (n for n in node.called if n.process_label == "PredictCalculation"), key=lambda n: n.ctime
    )
    prediction = predictions[0].outputs.predictions
    spread = dict(zip(prediction.get_array("ids"), prediction.get_array("std")[:, 1], strict=False))
    labels = sorted(pool)
    # a pool structure the models cannot take (here solid argon) is left out at the start and listed:
    # never predicted, never chosen
    std = np.array([spread.get(pool[label].uuid, np.nan) / len(pool[label].sites) for label in labels])
    unpredicted = {pool[labels[k]].uuid for k in np.flatnonzero(~np.isfinite(std))}
    assert unpredicted == set(summary["invalid"]) == {pool["mp_568145"].uuid}
    assert "noble-gas" in summary["invalid"][pool["mp_568145"].uuid] and "mp_568145" not in chosen
    features = composition_features(
        [pool[label].get_ase().numbers for label in labels],
        np.array([pool[label].get_cell_volume() for label in labels]),
    )
    expected = select_batch("diverse", 3, std, seed=1, features=features)
    assert chosen == sorted(labels[k] for k in expected)

    # the table's values joined the initial data; the members of round 1 were fine-tuned from round 0's
    references = [n for n in node.called if n.process_label == "TableReferenceWorkChain"]
    assert sorted(n.label for n in references) == chosen
    dataset = results["dataset"].get_dataset()
    assert results["dataset"].creator.inputs.dataset.uuid == initial.uuid and len(dataset) == 4 + 3
    for reference in references:
        row = table[reference.label.replace("_", "-")]
        index = list(dataset.ids).index(reference.outputs.primitive_structure.uuid)
        assert dataset.targets[index].tolist() == pytest.approx([row["U_kJmol"], row["Cv_JKmol"]], rel=1e-12)
        assert reference.outputs.thermal_properties["source"]["id"] == row["mp_id"]
    trainings = sorted((n for n in node.called if n.process_label == "TrainWorkChain"), key=lambda n: n.ctime)
    first = {n.outputs.model.uuid for n in trainings[:2]}
    assert all("model" not in n.inputs.train for n in trainings[:2])
    assert {n.inputs.train.model.uuid for n in trainings[2:]} == first
    rows_out = list(csv.DictReader(io.StringIO(results["learning_curve"].get_content())))
    assert [int(r["n_references"]) for r in rows_out] == [0, 3] and [
        int(r["n_training"]) for r in rows_out
    ] == [4, 7]


def test_a_round_without_new_references_keeps_the_ensemble(cgcnn_code, small_model, tmp_path):
    """An initial dataset of three table crystals; the pool, a group, holds bcc Cu, which has imaginary
    modes (computed, not trained on), and Pd, which the table lacks (the reference fails, is reported
    and skipped): round 1 adds nothing, so nothing is retrained. One member, random, no validation."""
    import gzip
    import json

    crystals = {
        "Cu_fcc": bulk("Cu", "fcc", a=3.59),
        "Ni_fcc": bulk("Ni", "fcc", a=3.52),
        "Al_fcc": bulk("Al", "fcc", a=4.05),
        "Cu_bcc": bulk("Cu", "bcc", a=2.87),
        "Pd_fcc": bulk("Pd", "fcc", a=3.94),
    }
    path = tmp_path / "table.jsonl.gz"
    values = {}
    with gzip.open(path, "wt") as handle:
        for k, name in enumerate(list(crystals)[:4]):
            atoms = crystals[name]
            values[name] = [7.0 + 0.25 * k, 23.0 + 0.5 * k]
            row = {
                "name": name,
                "lattice": atoms.cell.tolist(),
                "species": atoms.get_chemical_symbols(),
                "frac_coords": atoms.get_scaled_positions().tolist(),
                "T": 300.0,
                "U_kJmol": values[name][0],
                "Cv_JKmol": values[name][1],
                "S_JKmol": 30.0,
                "F_kJmol": -2.0,
                "min_freq_THz": -1.2 if name == "Cu_bcc" else 0.0,
            }
            handle.write(json.dumps(row) + "\n")
    initial = dataset_from_structures(
        [orm.StructureData(ase=crystals[n]).store() for n in ("Cu_fcc", "Ni_fcc", "Al_fcc")],
        [values[n] for n in ("Cu_fcc", "Ni_fcc", "Al_fcc")],
        ["U", "Cv"],
        ["kJ/mol", "J/(K mol)"],
    )
    pool = {
        label: orm.StructureData(ase=crystals[label], label=label).store() for label in ("Cu_bcc", "Pd_fcc")
    }
    group = orm.Group(label=f"pool-{tmp_path.name}").store()
    group.add_nodes(list(pool.values()))
    builder = _builder(
        cgcnn_code,
        small_model,
        pool_group=orm.Str(group.uuid),
        dataset=initial,
        per_round=orm.Int(2),
        rounds=orm.Int(1),
        members=orm.Int(1),
        strategy=orm.Str("random"),
    )
    builder.reference_workchain = orm.Str("cgcnn.table_reference")
    builder.reference_inputs = {"table": orm.Str(str(path))}
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    summary = results["summary"].get_dict()
    assert summary["computed"] == {label: {"round": 1, "uuid": pool[label].uuid} for label in pool}
    assert list(summary["failed"]) == ["Pd_fcc"]
    assert "is not in the table table.jsonl.gz" in summary["failed"]["Pd_fcc"]
    assert summary["unstable"] == {"Cu_bcc": -1.2} and summary["stopped"] == "budget spent: 1 rounds"
    assert results["dataset"].uuid == initial.uuid  # nothing was added
    trainings = [n for n in node.called if n.process_label == "TrainWorkChain"]
    assert len(trainings) == 1 and trainings[0].outputs.model.uuid == results["models"]["m0"].uuid
    assert results["ensemble"].member_sha256 == [results["models"]["m0"].sha256]
    rows = list(csv.DictReader(io.StringIO(results["learning_curve"].get_content())))
    assert [(r["round"], r["n_references"], r["n_added"], r["n_training"]) for r in rows] == [
        ("0", "0", "0", "3"),
        ("1", "2", "0", "3"),
    ]
    assert rows[1]["n_failed"] == "1" and rows[1]["n_unstable"] == "1" and rows[1]["Cv_mae"] == ""
    assert not [
        n for n in node.called if n.process_label == "PredictCalculation"
    ]  # random: nothing to predict
    assert results["learning_curve_plot"].get_content(mode="rb")[:4] == b"\x89PNG"
