"""The search's study: spaces, rungs, Optuna's ask and tell rebuilt from plain records (a reloaded
search decides as one that never stopped), successive halving, and trials that build real models."""

import json
import math
import zlib

import numpy as np
import pytest
import torch

from aiida_cgcnn.errors import ConfigError
from aiida_cgcnn.graph.features import atom_feature_table
from aiida_cgcnn.models.registry import build_model
from aiida_cgcnn.training.search import Rungs, SearchStudy, load_space, space_names, trial_parameters
from aiida_cgcnn.training.trainer import TrainConfig


def synthetic_score(params: dict, epochs: int) -> float:
    """A validation error that falls with the epochs and depends on the learning rate, with a
    deterministic jitter per parameter set: enough to rank trials like real ones do."""
    lr = params.get("train.lr", 1e-3)
    jitter = (zlib.crc32(json.dumps(params, sort_keys=True).encode()) % 1000) / 1e5
    return abs(math.log10(lr) + 2.5) + 1.0 / epochs + jitter


def run_search(study: SearchStudy, trials: int, reload_every_step: bool = False) -> SearchStudy:
    """Trials one after the other, each through its rungs; optionally the study is rebuilt from its
    JSON before every ask and tell, as a work chain reloaded from its checkpoint would."""
    for _ in range(trials):
        if reload_every_step:
            study = SearchStudy.from_dict(json.loads(json.dumps(study.to_dict())))
        record = study.ask()
        epochs = 0
        while True:
            if reload_every_step:
                study = SearchStudy.from_dict(json.loads(json.dumps(study.to_dict())))
            epochs = study.rungs.after(epochs)
            if study.tell(record["number"], epochs, synthetic_score(record["params"], epochs)) != "continue":
                break
    return study


def test_rungs_grow_by_the_reduction_factor_up_to_the_full_training():
    assert Rungs(2, 18, 3).epochs == [2, 6, 18]
    assert Rungs(5, 45).epochs == [5, 15, 45]
    assert Rungs(4, 30, 2).epochs == [4, 8, 16, 30]
    assert Rungs(3, 3).epochs == [3]
    assert Rungs(2, 18).after(0) == 2 and Rungs(2, 18).after(6) == 18
    with pytest.raises(ConfigError, match="min_epochs <= max_epochs"):
        Rungs(10, 5)
    with pytest.raises(ConfigError, match="reduction factor"):
        Rungs(1, 5, 1)


def test_a_search_reloaded_from_its_records_at_every_step_decides_exactly_as_one_that_never_stopped():
    straight = run_search(SearchStudy("cgcnn", Rungs(1, 9), seed=3, n_startup_trials=3), 12)
    reloaded = run_search(
        SearchStudy("cgcnn", Rungs(1, 9), seed=3, n_startup_trials=3), 12, reload_every_step=True
    )
    assert [r["params"] for r in straight.records] == [r["params"] for r in reloaded.records]
    assert [(r["state"], r["epochs"], r["scores"]) for r in straight.records] == [
        (r["state"], r["epochs"], r["scores"]) for r in reloaded.records
    ]
    # a different seed samples other trials: the equality above is not a constant sampler's
    other = run_search(SearchStudy("cgcnn", Rungs(1, 9), seed=4, n_startup_trials=3), 3)
    assert [r["params"] for r in other.records] != [r["params"] for r in straight.records[:3]]


def test_successive_halving_stops_poor_trials_at_a_rung_and_keeps_the_best():
    study = run_search(SearchStudy("cgcnn", Rungs(1, 9), sampler="random", seed=0), 18)
    states = [r["state"] for r in study.records]
    assert states.count("pruned") >= 6 and states.count("complete") >= 2
    pruned = [r for r in study.records if r["state"] == "pruned"]
    assert all(r["epochs"] < 9 for r in pruned) and all(
        r["value"] == r["scores"][str(r["epochs"])] for r in pruned
    )
    # at the first rung, the trials that went on scored better than the median of those pruned there
    first = [r for r in study.records if "1" in r["scores"]]
    kept = [r["scores"]["1"] for r in first if r["epochs"] > 1]
    stopped = [r["scores"]["1"] for r in first if r["epochs"] == 1]
    assert kept and stopped and np.median(kept) < np.median(stopped)
    best = study.best()
    assert best["state"] == "complete"
    assert best["value"] == min(r["value"] for r in study.records if r["state"] == "complete")


def test_without_a_pruner_every_trial_trains_to_the_end():
    study = run_search(SearchStudy("cgcnn", Rungs(1, 9), sampler="random", pruner="none", seed=0), 6)
    assert [r["state"] for r in study.records] == ["complete"] * 6
    assert all(list(r["scores"]) == ["1", "3", "9"] for r in study.records)


def test_a_failed_or_diverged_trial_is_recorded_and_the_search_goes_on():
    study = SearchStudy("cgcnn", Rungs(1, 3), sampler="random", seed=0)
    first = study.ask()
    assert study.tell(first["number"], 1, float("nan")) == "failed"
    assert "validation mae is nan" in study.record(0)["reason"]
    study.fail(study.ask()["number"], "exit code 6: out of memory")
    third = study.ask()
    assert study.tell(third["number"], 3, 0.5) == "complete"
    assert study.best()["number"] == 2
    assert [row["state"] for row in study.rows()] == ["failed", "failed", "complete"]
    with pytest.raises(ValueError, match="trial 0 is failed"):
        study.tell(0, 3, 0.1)


def test_accuracy_is_maximised():
    study = SearchStudy("cgcnn", Rungs(1, 1), metric="accuracy", sampler="random", pruner="none")
    for value in (0.7, 0.9, 0.8):
        study.tell(study.ask()["number"], 1, value)
    assert study.direction == "maximize" and study.best()["value"] == 0.9


def test_conditional_parameters_are_sampled_only_for_their_architecture():
    study = SearchStudy("architecture", Rungs(1, 1), sampler="random", pruner="none", seed=1)
    records = [study.ask() for _ in range(16)]
    kinds = {r["params"]["model.architecture"] for r in records}
    assert kinds == {"cgcnn", "alignn"}
    for r in records:
        names = set(r["params"])
        if r["params"]["model.architecture"] == "cgcnn":
            assert "model.n_conv" in names and "model.alignn_layers" not in names
        else:
            assert "model.alignn_layers" in names and "model.n_conv" not in names


@pytest.mark.parametrize("space", space_names())
def test_every_trial_of_the_shipped_spaces_is_a_valid_training(space):
    """Sampled settings are settings the trainer and the model builder accept, as the paper's ranges
    translate them; a typo in the spaces file fails here, not in the first trial of a user's search."""
    study = SearchStudy(space, Rungs(1, 1), sampler="random", pruner="none", seed=2)
    table = torch.as_tensor(atom_feature_table(), dtype=torch.float32)
    for _ in range(6):
        parameters = trial_parameters(study.ask()["params"], {"train": {"epochs": 3}})
        assert set(parameters) <= {"model", "train", "descriptors"}
        TrainConfig.from_dict(parameters["train"]).validate()
        extra = 29 if parameters.get("descriptors", "none") != "none" else 0
        model = build_model({**parameters["model"], "out_features": 1, "extra_features": extra}, table)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_trial_parameters_put_each_value_in_its_section_over_the_base():
    base = {"model": {"atom_fea_len": 8, "pooling": "sum"}, "train": {"seed": 3}}
    parameters = trial_parameters({"model.atom_fea_len": 64, "train.lr": 0.01, "descriptors": "none"}, base)
    assert parameters == {
        "model": {"atom_fea_len": 64, "pooling": "sum"},
        "train": {"seed": 3, "lr": 0.01},
        "descriptors": "none",
    }
    assert base["model"]["atom_fea_len"] == 8  # not modified


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("nonsense", "unknown search space 'nonsense'"),
        ({"parameters": {}}, "non-empty `parameters`"),
        ({"parameters": {"lr": {"type": "float", "low": 0.1, "high": 1}}}, "name it model.NAME"),
        ({"parameters": {"train.lr": {"type": "normal"}}}, "`type` must be one of"),
        ({"parameters": {"train.lr": {"type": "float", "low": 1, "high": 0.1}}}, "numbers `low` <= `high`"),
        ({"parameters": {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log range"),
        ({"parameters": {"model.pooling": {"type": "categorical", "choices": []}}}, "list of `choices`"),
        (
            {
                "parameters": {
                    "model.n_conv": {"type": "int", "low": 1, "high": 3, "when": {"model.architecture": "x"}}
                }
            },
            "must come before it",
        ),
    ],
)
def test_a_bad_space_is_refused_naming_the_parameter(space, message):
    with pytest.raises(ConfigError, match=message):
        load_space(space)
