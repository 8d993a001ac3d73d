"""``cgcnn.hyperparameter_search`` end to end on localhost, the real ``aiida-cgcnn`` code: trials are
concurrent jobs, promoted trials continue from their checkpoints, the test part reaches only the best
model's prediction, and the study's state lives in the work chain's checkpointable context."""

import csv
import io
import itertools
import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.orm.utils.serialize import deserialize_unsafe, serialize

from aiida_cgcnn.calculations.train import TrainCalculation
from aiida_cgcnn.training.search import Rungs, SearchStudy
from aiida_cgcnn.workflows.search import HyperparameterSearchWorkChain
from aiida_cgcnn.workflows.train import TrainWorkChain

SPACE = {  # by section: an AiiDA Dict holds no dotted keys
    "model": {"n_conv": {"type": "int", "low": 1, "high": 2}},
    "train": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
}


def builder_for(code, dataset, trials=4, **extra):
    builder = HyperparameterSearchWorkChain.get_builder()
    builder.dataset = dataset
    builder.space = orm.Dict(SPACE)
    builder.trials = orm.Int(trials)
    builder.max_concurrent = orm.Int(2)
    builder.min_epochs = orm.Int(1)
    builder.max_epochs = orm.Int(4)
    builder.reduction_factor = orm.Int(2)
    builder.startup_trials = orm.Int(2)
    builder.training.train.code = code
    builder.training.train.parameters = orm.Dict(
        {"model": {"atom_fea_len": 8, "h_fea_len": 16}, "train": {"batch_size": 8}}
    )
    builder.training.train.metadata.options.resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    builder.predict.code = code
    for key, value in extra.items():
        setattr(builder, key, orm.to_aiida_type(value))
    return builder


@pytest.mark.slow
def test_a_search_of_concurrent_trial_jobs_continues_the_promoted_and_tests_only_the_best(
    cgcnn_code, dataset_node
):
    _, node = run_get_node(builder_for(cgcnn_code, dataset_node))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    records = json.loads(node.outputs.study.get_content("r"))["records"]
    assert len(records) == 4 and {r["state"] for r in records} <= {"complete", "pruned"}
    summary = node.outputs.summary.get_dict()
    assert summary["states"]["complete"] >= 1

    # every (trial, rung) trained once: one restart work chain each, labelled by trial and epochs
    trainings = [n for n in node.called if n.process_class is TrainWorkChain]
    labels = [link.link_label for link in node.base.links.get_outgoing(node_class=orm.WorkChainNode).all()]
    assert len(labels) == len(set(labels)) == sum(len(r["pks"]) for r in records)
    assert sorted(n.pk for n in trainings) == sorted(pk for r in records for pk in r["pks"])

    # trials ran as concurrent jobs: two calculations' lifetimes overlap
    calcs = sorted(
        (c for w in trainings for c in w.called if c.process_class is TrainCalculation), key=lambda c: c.ctime
    )
    assert any(a.mtime > b.ctime for a, b in itertools.pairwise(calcs))

    # a complete trial: one run planned for 4 epochs, paused at 1 and 2, continued from its checkpoint
    complete = next(r for r in records if r["state"] == "complete")
    segments = [orm.load_node(pk) for pk in complete["pks"]]
    assert [w.inputs.train.parameters["train"].get("stop_epoch") for w in segments] == [1, 2, None]
    assert all(w.inputs.train.parameters["train"]["epochs"] == 4 for w in segments)
    for before, after in itertools.pairwise(segments):
        assert after.inputs.train.parent_folder.uuid == before.outputs.remote_folder.uuid
    assert segments[-1].outputs.metrics["epochs_run"] == 4
    assert list(complete["scores"]) == ["1", "2", "4"]

    # the best model is the best complete trial's, and only it predicted the held-out part
    best = min((r for r in records if r["state"] == "complete"), key=lambda r: r["value"])
    assert node.outputs.model.uuid == best["model"] == orm.load_node(best["pks"][-1]).outputs.model.uuid
    assert summary["best"]["trial"] == best["number"]
    assert summary["best"]["params"]["model"]["n_conv"] == best["params"]["model.n_conv"]  # nested
    split = node.base.links.get_outgoing(link_label_filter="split").one().node
    test = split.base.links.get_outgoing(link_label_filter="test").one().node
    search = split.base.links.get_outgoing(link_label_filter="search").one().node
    assert test.size + search.size == dataset_node.size == 40 and test.size == 8
    users = {link.node.process_class.__name__ for link in test.base.links.get_outgoing().all()}
    assert users == {"PredictCalculation", "validation_errors"}
    assert all(w.inputs.train.dataset.uuid == search.uuid for w in trainings)
    assert node.outputs.test_errors["n"] == 8
    assert summary["test"]["emt_energy"]["mae"] == node.outputs.test_errors["emt_energy"]["mae"] > 0

    rows = list(csv.DictReader(io.StringIO(node.outputs.trials.get_content())))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert {"model.n_conv", "train.lr", "epochs", "val_mae", "state", "pks"} <= set(rows[0])
    assert len(node.outputs.plot.get_content("rb")) > 10_000


def test_the_study_in_the_context_survives_the_checkpoint_serializer():
    """What the work chain keeps between steps, through the serializer of its checkpoints, gives the
    same next decisions."""
    study = SearchStudy({"parameters": SPACE}, Rungs(1, 4, 2), seed=1, n_startup_trials=2)
    for k in range(3):
        study.tell(study.ask()["number"], 1, 0.1 * (k + 1))
    state = study.to_dict()
    reloaded = SearchStudy.from_dict(deserialize_unsafe(serialize(state)))
    assert reloaded.to_dict() == state
    assert reloaded.ask()["params"] == study.ask()["params"]


@pytest.fixture(scope="module")
def few_alloys(aiida_profile, alloy_data):
    """A dataset node of six alloys: what the refusals below need (the refusal comes first)."""
    from aiida_cgcnn.calculations.functions import dataset_from_structures

    structures = [orm.StructureData(ase=atoms).store() for atoms in alloy_data[0][:6]]
    return dataset_from_structures(structures, alloy_data[1][:6], ["emt_energy"], ["eV/atom"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_epochs": 5}, "min_epochs <= max_epochs"),
        ({"sampler": "grid"}, "unknown sampler 'grid'"),
        ({"space": "nonsense"}, "unknown search space 'nonsense'"),
        ({"split": [0.6, 0.0, 0.4]}, "the first two positive"),
        ({"trials": 0}, "`trials` must be at least 1"),
    ],
)
def test_bad_inputs_are_refused_at_submission(cgcnn_code, few_alloys, change, message):
    with pytest.raises(ValueError, match=message):
        run_get_node(builder_for(cgcnn_code, few_alloys, **change))


def test_training_settings_the_search_sets_are_refused(cgcnn_code, few_alloys):
    builder = builder_for(cgcnn_code, few_alloys)
    builder.training.train.parameters = orm.Dict({"train": {"epochs": 10, "batch_size": 8}})
    with pytest.raises(ValueError, match=r"sets train\.epochs, which the search sets itself"):
        run_get_node(builder)
