"""Input validation of the CalcJobs at the door: from the core settings' own schema, naming the key."""

import re

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.parameters import SECTIONS, validate_train_parameters
from aiida_cgcnn.calculations.predict import PredictCalculation
from aiida_cgcnn.calculations.train import TrainCalculation

VALID = [
    {},
    {"model": {"architecture": "alignn", "hidden_features": 64}, "train": {"lr": 1, "patience": None}},
    {"train": {"lr_milestones": [10, 20], "time_budget": 60}, "graph": {"radius": 6, "max_radius": 9.0}},
    {"atom_properties": ["group", "period", "electronegativity"], "descriptors": "density,vpa"},
    {"nproc_per_node": 2, "skip_invalid": True, "descriptors": "none"},
]

INVALID = [
    ({"train": {"epochs": "ten"}}, r"^parameters\.train\.epochs: 'ten' is not of type int$"),
    ({"train": {"lr": True}}, r"^parameters\.train\.lr: True is not of type float$"),
    (
        {"train": {"lr_milestones": [1.5]}},
        r"^parameters\.train\.lr_milestones: \[1\.5\] is not of type list\[int\]",
    ),
    ({"train": {"epochs": 0}}, r"^parameters\.train\.epochs: epochs must be >= 1$"),
    (
        {"train": {"optimizer": "rmsprop"}},
        r"^parameters\.train\.optimizer: optimizer must be adam, adamw or sgd",
    ),
    ({"train": {"val_ratio": -0.1}}, r"^parameters\.train: split ratios must be >= 0 \(val_ratio=-0\.1\)$"),
    ({"train": {"train_ratio": 0.9}}, r"^parameters\.train: split ratios sum above 1 \(train_ratio=0\.9\)$"),
    ({"train": {"lrr": 0.1}}, r"^parameters\.train\.lrr: unknown key; valid keys are \["),
    ({"train": 5}, r"^parameters\.train: a dictionary of TrainConfig fields, not int$"),
    ({"graph": {"radius": "8"}}, r"^parameters\.graph\.radius: '8' is not of type float$"),
    ({"graph": {"cutoff": 8.0}}, r"^parameters\.graph\.cutoff: unknown key"),
    ({"model": {"n_conv": 2.5}}, r"^parameters\.model\.n_conv: 2\.5 is not of type int$"),
    ({"model": {"hidden_features": 64}}, r"^parameters\.model\.hidden_features: unknown key for cgcnn"),
    ({"model": {"architecture": "schnet"}}, r"^parameters\.model\.architecture: 'schnet' is not one of"),
    (
        {"atom_properties": ["group", "spin"]},
        r"^parameters\.atom_properties: unknown \['spin'\]; choose from \[",
    ),
    ({"atom_properties": "group"}, r"^parameters\.atom_properties: a non-empty list of names from \["),
    ({"atom_properties": ["group", "group"]}, r"^parameters\.atom_properties: a name is given twice$"),
    ({"descriptors": ["density"]}, r"^parameters\.descriptors: a string"),
    ({"descriptors": "densty"}, r"^parameters\.descriptors: unknown descriptors \['densty'\]"),
    ({"nproc_per_node": 0}, r"^parameters\.nproc_per_node: must be a positive integer"),
    ({"skip_invalid": "yes"}, r"^parameters\.skip_invalid: must be true or false$"),
    ({"epochs": 3}, r"^parameters: unknown key\(s\) \['epochs'\]"),
]


@pytest.mark.parametrize("parameters", VALID)
def test_valid_parameters_pass(parameters):
    assert validate_train_parameters(parameters) is None


@pytest.mark.parametrize(("parameters", "error"), INVALID)
def test_invalid_parameters_are_named(parameters, error):
    message = validate_train_parameters(parameters)
    assert message is not None
    assert re.search(error, message), message


def test_parameters_help_lists_every_section():
    help_text = TrainCalculation.spec().inputs["parameters"].help
    for section in SECTIONS:
        assert f"`{section}`" in help_text, section


@pytest.mark.parametrize(
    ("port", "value", "error"),
    [
        ("batch_size", 0, r"batch_size: 0 structures per batch; give a positive number"),
        ("batch_size", -3, r"batch_size: -3"),
        ("device", "gpu", r"device: 'gpu' is not auto, cpu, cuda or cuda:N"),
        ("device", "cuda:x", r"device: 'cuda:x'"),
    ],
)
def test_predict_batch_size_and_device_are_validated(aiida_profile, port, value, error):
    node = orm.Int(value) if port == "batch_size" else orm.Str(value)
    result = PredictCalculation.spec().inputs[port].validate(node)
    assert result is not None and re.search(error, result.message), result


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_predict_devices_that_pass(aiida_profile, device):
    assert PredictCalculation.spec().inputs["device"].validate(orm.Str(device)) is None
    assert PredictCalculation.spec().inputs["batch_size"].validate(orm.Int(1)) is None


def test_parent_folder_must_be_on_the_code_computer(cgcnn_code, dataset_node, aiida_computer_local, tmp_path):
    other = aiida_computer_local(label=f"elsewhere-{tmp_path.name}")
    parent = orm.RemoteData(computer=other, remote_path=str(tmp_path)).store()
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parent_folder = parent
    with pytest.raises(
        ValueError, match=r"`parent_folder` is on computer 'elsewhere-.*' but the code runs on"
    ):
        run_get_node(builder)
