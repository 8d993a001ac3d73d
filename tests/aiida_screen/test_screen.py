"""``cgcnn.screen`` end to end on localhost: shards run as real ``cgcnn.predict`` jobs of the real
``aiida-cgcnn`` command, one table in input order, the criterion's selection in a group, invalid
structures and failed shards reported, predictions found from each structure."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from ase import Atoms
from ase.build import bulk

from aiida_cgcnn.calculations.functions.screen import read_screening_table, shard_uuids
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.data.dataset import CrystalDatasetData
from aiida_cgcnn.provenance import find_predictions
from aiida_cgcnn.selection import Criterion
from aiida_cgcnn.workflows.screen import SHARD_VARIABLE, ScreenWorkChain

CRITERION = {"target": "emt_energy", "direction": "min", "top_k": 4, "max_std": 1.0}
#: for one model, which has no spread
ONE_MODEL = {"target": "emt_energy", "direction": "min", "top_k": 4}


def _alloys(alloy_data, count: int, invalid_at: dict[int, Atoms]) -> list[orm.StructureData]:
    """``count`` alloys stored in order, with the invalid structures stored at the given positions."""
    nodes, alloys = [], iter(alloy_data[0])
    for k in range(count + len(invalid_at)):
        atoms = invalid_at[k] if k in invalid_at else next(alloys)
        node = orm.StructureData(ase=atoms)
        node.label = f"s{k}"
        nodes.append(node.store())
    return nodes


def _invalid() -> dict[int, Atoms]:
    """Argon only (no model takes noble-gas-only crystals) and two atoms on top of each other."""
    stacked = Atoms("CuNi", positions=[[0, 0, 0], [0, 0, 0]], cell=np.eye(3) * 3.6, pbc=True)
    return {3: bulk("Ar", "fcc", a=5.26), 8: stacked}


def _dummy_code(factory, executable, label: str, prepend: str):
    """The real command on localhost, under a label of its own, with ``prepend`` before it."""
    return factory(
        label=label, filepath_executable=executable, prepend_text=f"export OMP_NUM_THREADS=1\n{prepend}"
    )


def _builder(code, **inputs) -> object:
    builder = ScreenWorkChain.get_builder()
    builder.code = code
    builder.criterion = orm.Dict(CRITERION)
    builder.predict.device = "cpu"
    for key, value in inputs.items():
        builder[key] = value
    return builder


def test_three_shards_one_table_in_input_order_with_selection_and_provenance(cgcnn_code, members, alloy_data):
    nodes = _alloys(alloy_data, 12, _invalid())
    group = orm.Group(label="screen-test-alloys").store()
    group.add_nodes(list(reversed(nodes)))  # the group's order is by pk, not by when nodes were added
    results, node = run_get_node(
        _builder(
            cgcnn_code,
            structure_group=orm.Str(group.uuid),
            models=members,
            shard_size=orm.Int(5),
            link_structures=orm.Bool(True),
        )
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    summary = results["summary"].get_dict()
    meta, units, rows = read_screening_table(results["table"])

    # every structure once, in pk order, with its pk, label and shard
    assert [r["uuid"] for r in rows] == [n.uuid for n in nodes]
    assert [r["pk"] for r in rows] == [n.pk for n in nodes] and [r["label"] for r in rows] == [
        n.label for n in nodes
    ]
    assert [r["shard"] for r in rows] == [0] * 5 + [1] * 5 + [2] * 4
    assert summary["structures"] == 14 and summary["predicted"] == 12 and summary["invalid"] == 2

    # the invalid ones are named by UUID with their reason: one left out of the shard's dataset, the
    # other by the prediction job (its graph cannot be built)
    argon, stacked = nodes[3], nodes[8]
    assert set(summary["invalid_reasons"]) == {argon.uuid, stacked.uuid}
    assert "noble-gas" in summary["invalid_reasons"][argon.uuid]
    assert "overlapping atoms" in summary["invalid_reasons"][stacked.uuid]
    assert rows[3]["status"] == rows[8]["status"] == "invalid" and rows[3]["reason"] and rows[8]["reason"]
    assert np.isnan(rows[3]["emt_energy"]) and not rows[3]["selected"]

    # three jobs, each a real cgcnn.predict that succeeded, each submitted before the one before it
    # finished; a shard's job reached the scheduler before the next shard was read
    calcs = [orm.load_node(s["calculations"][0]) for s in summary["shards"]]
    assert [len(s["calculations"]) for s in summary["shards"]] == [1, 1, 1]
    assert all(isinstance(c, orm.CalcJobNode) and c.process_class is PredictCalculation for c in calcs)
    assert all(c.is_finished_ok for c in calcs)
    assert all(later.ctime < earlier.mtime for earlier, later in itertools.pairwise(calcs))
    shard_calls = {link.link_label: link.node for link in node.base.links.get_outgoing().all()}
    for k in (0, 1):
        script = Path(calcs[k].outputs.remote_folder.get_remote_path()) / "_aiidasubmit.sh"
        uploaded = datetime.fromtimestamp(script.stat().st_mtime, tz=timezone.utc)
        assert uploaded < shard_calls[f"shard_{k + 1:04d}"].ctime
    assert [c.get_option("environment_variables")[SHARD_VARIABLE] for c in calcs] == ["0", "1", "2"]

    # the ensemble of the two members: its mean and spread for each structure
    ensemble = results["model"]
    assert ensemble.member_sha256 == [members["m0"].sha256, members["m1"].sha256]
    valid = [k for k, r in enumerate(rows) if r["status"] == "predicted"]
    direct = ensemble.get_ensemble().predict([nodes[k].get_ase() for k in valid], warn=False)
    values = np.array([r["emt_energy"] for r in rows])
    std = np.array([r["emt_energy_std"] for r in rows])
    np.testing.assert_allclose(values[valid], direct.mean[:, 0], rtol=1e-6)
    np.testing.assert_allclose(std[valid], direct.std[:, 0], rtol=1e-5, atol=1e-8)
    assert units["emt_energy"] == units["emt_energy_std"] == "eV/atom"
    assert meta["criterion"] == Criterion.from_dict(CRITERION).to_dict()

    # the selection is the criterion's on the table's values, best first, and fills the group
    expected = Criterion.from_dict(CRITERION).select(values, std)
    assert len(expected) == 4 and summary["selected"] == 4
    assert [r["rank"] for r in sorted(rows, key=lambda r: r["rank"] or 99)][:4] == [1, 2, 3, 4]
    assert [rows[k]["rank"] for k in expected] == [1, 2, 3, 4]
    assert sum(r["selected"] for r in rows) == 4
    selected = orm.load_group(summary["group"]["uuid"])
    assert selected.label == f"cgcnn/screen/{node.pk}/selected"
    assert {n.uuid for n in selected.nodes} == {rows[k]["uuid"] for k in expected}
    assert summary["selected_pks"] == [rows[k]["pk"] for k in expected]
    by_spread = sorted(valid, key=lambda k: (-std[k], k))
    assert summary["most_uncertain_pks"] == [rows[k]["pk"] for k in by_spread]

    # each prediction is found from its structure: no node per structure, the shard's job's rows
    for k in (0, 5, 13):
        (record,) = find_predictions(nodes[k], derived=False)
        assert record.process_uuid == calcs[rows[k]["shard"]].uuid
        assert record.values["emt_energy"] == pytest.approx(values[k], rel=1e-6)
        assert record.std["emt_energy"] == pytest.approx(std[k], rel=1e-5)
        assert record.model_uuid == ensemble.uuid
    assert find_predictions(stacked, derived=False) == []


def test_a_failing_shard_is_retried_once_then_reported_with_the_others_intact(
    aiida_code_installed, aiida_localhost, cgcnn_executable, members, alloy_data, tmp_path
):
    """A code whose jobs exit before the command for shard 1 always and for shard 2 once: shard 2
    succeeds on its second job, shard 1 fails twice and is reported; shards 0 and 2 are in the table."""
    aiida_localhost.set_minimum_job_poll_interval(0.2)
    marker = tmp_path / "shard-2-failed-once"
    code = aiida_code_installed(
        label=f"aiida-cgcnn-flaky-{tmp_path.name}",
        filepath_executable=cgcnn_executable,
        prepend_text=(
            "export OMP_NUM_THREADS=1\n"
            f'if [ "${SHARD_VARIABLE}" = 1 ]; then echo "shard 1 refused" >&2; exit 3; fi\n'
            f'if [ "${SHARD_VARIABLE}" = 2 ] && [ ! -e {marker} ]; then touch {marker}; exit 4; fi'
        ),
    )
    nodes = _alloys(alloy_data, 9, {})
    structures = {f"s{k:02d}": n for k, n in enumerate(nodes)}
    results, node = run_get_node(
        _builder(
            code,
            structures=structures,
            model=members["m0"],
            criterion=orm.Dict(ONE_MODEL),
            shard_size=orm.Int(3),
            link_structures=orm.Bool(False),
        )
    )
    assert node.exit_status == ScreenWorkChain.exit_codes.ERROR_SHARDS_FAILED.status
    assert "1 of 3 shard(s) failed twice (1)" in node.exit_message
    summary = results["summary"].get_dict()
    shards = summary["shards"]
    assert [len(s["calculations"]) for s in shards] == [1, 2, 2]
    assert [s["status"] for s in shards] == ["predicted", "failed", "predicted"]
    jobs = [[orm.load_node(pk) for pk in s["calculations"]] for s in shards]
    assert [[j.is_finished_ok for j in attempts] for attempts in jobs] == [
        [True],
        [False, False],
        [False, True],
    ]
    # the job itself failed: the code's prepend text stopped it before the command
    retrieved = jobs[1][-1].outputs.retrieved.base.repository
    assert "shard 1 refused" in retrieved.get_object_content("_scheduler-stderr.txt")
    assert list(summary["failed_shards"]) == ["1"] and "failed 2 times" in summary["failed_shards"]["1"]
    assert summary["predicted"] == 6 and summary["in_failed_shards"] == 3

    # the table keeps everything, in input order; the failed shard's rows say why they have no value
    _, units, rows = read_screening_table(results["table"])
    assert [r["uuid"] for r in rows] == [n.uuid for n in nodes]
    assert [r["status"] for r in rows] == ["predicted"] * 3 + ["failed"] * 3 + ["predicted"] * 3
    assert all("shard 1 failed 2 times" in r["reason"] for r in rows[3:6])
    assert "emt_energy_std" not in units  # a single model has no spread
    local = members["m0"].get_predictor().predict([n.get_ase() for n in nodes]).values[:, 0]
    values = np.array([r["emt_energy"] for r in rows])
    np.testing.assert_allclose(values[[0, 1, 2, 6, 7, 8]], local[[0, 1, 2, 6, 7, 8]], rtol=1e-6)
    # top 4 by the lowest energy among the predicted ones
    expected = Criterion.from_dict(ONE_MODEL).select(values)
    assert [rows[k]["rank"] for k in expected] == [1, 2, 3, 4] and set(expected) <= {0, 1, 2, 6, 7, 8}
    # unlinked shards (link_structures False): each shard's calcfunction took a List of the UUIDs, and its
    # dataset names them; the successful job of the retried shard is found from a structure's UUID
    calls = node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()
    shard = next(link.node for link in calls if link.link_label == "shard_0000")
    inputs = shard.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    assert [link.link_label for link in inputs] == ["uuids"]
    assert shard_uuids(inputs[0].node) == [n.uuid for n in nodes[:3]]
    query = orm.QueryBuilder()
    query.append(CrystalDatasetData, filters=CrystalDatasetData.naming([nodes[7].uuid]), tag="d")
    query.append(PredictCalculation, with_incoming="d", filters={"attributes.exit_status": 0}, project="uuid")
    assert query.all(flat=True) == [jobs[2][1].uuid]
    # no link from the structures, yet find_predictions finds the row by the UUIDs the dataset names
    (record,) = find_predictions(nodes[7], derived=False)
    assert record.process_uuid == jobs[2][1].uuid and record.structure_uuid == nodes[7].uuid
    assert record.values["emt_energy"] == pytest.approx(values[7], rel=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"criterion": {"target": "Cv"}}, "target 'Cv' is not predicted by"),
        ({"criterion": {"target": "emt_energy", "topk": 3}}, "unknown criterion key"),
        ({"criterion": {"target": "emt_energy", "direction": "up"}}, "direction"),
        ({"structure_group": "no-such-group"}, "no single group 'no-such-group'"),
        ({"pretrained": "no-such-model"}, "no pretrained model 'no-such-model'"),
        ({"shard_size": 0}, "shard_size 0"),
        ({"criterion": {"target": "emt_energy", "max_std": 0.1}}, "max_std needs a spread"),
    ],
)
def test_bad_inputs_are_refused_at_launch_with_the_reason(cgcnn_code, members, alloy_data, change, message):
    structures = {"a": orm.StructureData(ase=alloy_data[0][0]).store()}
    inputs = {
        "structures": structures,
        "model": members["m0"],
        "criterion": orm.Dict({"target": "emt_energy"}),
    }
    for key, value in change.items():
        if key == "criterion":
            inputs["criterion"] = orm.Dict(value)
        elif key == "structure_group":
            inputs = {**inputs, "structure_group": orm.Str(value)}
            inputs.pop("structures")
        elif key == "pretrained":
            inputs.pop("model")
            inputs["pretrained"] = orm.Str(value)
        else:
            inputs[key] = orm.Int(value)
    with pytest.raises(ValueError, match=message):
        run_get_node(ScreenWorkChain, code=cgcnn_code, **inputs)


def test_one_model_one_source_of_structures(cgcnn_code, members, alloy_data):
    structure = orm.StructureData(ase=alloy_data[0][0]).store()
    criterion = orm.Dict({"target": "emt_energy"})
    with pytest.raises(ValueError, match="give one model"):
        run_get_node(
            ScreenWorkChain, code=cgcnn_code, structures={"a": structure}, criterion=criterion,
            model=members["m0"], models=members,
        )  # fmt: skip
    group = orm.Group(label="screen-test-both").store()
    with pytest.raises(ValueError, match="either as the `structures` namespace or as `structure_group`"):
        run_get_node(
            ScreenWorkChain, code=cgcnn_code, structures={"a": structure}, criterion=criterion,
            model=members["m0"], structure_group=orm.Str(group.label),
        )  # fmt: skip
    with pytest.raises(ValueError, match="holds no StructureData"):
        run_get_node(
            ScreenWorkChain, code=cgcnn_code, criterion=criterion, model=members["m0"],
            structure_group=orm.Str(group.label),
        )  # fmt: skip


@pytest.mark.slow  # about 25 s: four jobs in two rounds
def test_no_valid_structure_and_every_shard_failing_have_their_exit_codes(
    aiida_code_installed, aiida_localhost, cgcnn_executable, members, alloy_data, tmp_path
):
    """Only noble-gas crystals: no job runs, exit 411, each listed. A code whose every job stops before
    the command: each shard submitted twice, exit 410, every structure reported in a failed shard."""
    noble = {
        f"s{k}": orm.StructureData(ase=bulk(x, "fcc", a=a)).store()
        for k, (x, a) in enumerate([("Ar", 5.26), ("Kr", 5.72)])
    }
    code = _dummy_code(aiida_code_installed, cgcnn_executable, f"aiida-cgcnn-{tmp_path.name}", "")
    results, node = run_get_node(
        _builder(code, structures=noble, model=members["m0"], criterion=orm.Dict(ONE_MODEL))
    )
    assert node.exit_status == ScreenWorkChain.exit_codes.ERROR_NO_VALID_STRUCTURE.status
    assert not [c for c in node.called if isinstance(c, orm.CalcJobNode)]
    _, _, rows = read_screening_table(results["table"])
    assert [r["status"] for r in rows] == ["invalid", "invalid"] and all(
        "noble-gas" in r["reason"] for r in rows
    )
    assert results["summary"]["shards"][0]["status"] == "no valid structure"

    aiida_localhost.set_minimum_job_poll_interval(0.2)
    broken = _dummy_code(
        aiida_code_installed, cgcnn_executable, f"aiida-cgcnn-broken-{tmp_path.name}", "exit 5"
    )
    nodes = {f"s{k}": n for k, n in enumerate(_alloys(alloy_data, 2, {}))}
    results, node = run_get_node(
        _builder(
            broken,
            structures=nodes,
            model=members["m0"],
            criterion=orm.Dict(ONE_MODEL),
            shard_size=orm.Int(1),
        )
    )
    assert node.exit_status == ScreenWorkChain.exit_codes.ERROR_ALL_SHARDS_FAILED.status
    summary = results["summary"].get_dict()
    assert [len(s["calculations"]) for s in summary["shards"]] == [2, 2]
    assert summary["in_failed_shards"] == 2 and summary["predicted"] == 0 and summary["selected"] == 0
