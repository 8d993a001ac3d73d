"""TrainWorkChain.get_builder_from_protocol: every protocol gives inputs the work chain accepts, the
fast one trains for real, overrides win key by key, unknown names are clear errors."""

from __future__ import annotations

import pytest
from aiida.engine import run_get_node

from aiida_cgcnn.errors import ConfigError
from aiida_cgcnn.training.presets import PRESETS
from aiida_cgcnn.workflows.train import TrainWorkChain

CASES = [
    (name, architecture)
    for name in TrainWorkChain.get_available_protocols()
    for architecture in ("cgcnn", "alignn")
    if name != "alignn-paper" or architecture == "alignn"
]


def test_protocols_are_listed_with_descriptions():
    protocols = TrainWorkChain.get_available_protocols()
    assert {"fast", "moderate", "precise", "alignn-paper"} <= set(protocols)
    assert all(len(p["description"]) > 40 for p in protocols.values())
    assert TrainWorkChain.get_default_protocol() in protocols


@pytest.mark.parametrize(("protocol", "architecture"), CASES)
def test_every_protocol_gives_a_builder_that_validates(cgcnn_code, dataset_node, protocol, architecture):
    builder = TrainWorkChain.get_builder_from_protocol(
        cgcnn_code, dataset_node, protocol=protocol, architecture=architecture
    )
    inputs = builder._inputs(prune=True)
    assert TrainWorkChain.spec().inputs.validate(inputs) is None
    parameters = builder.train.parameters.get_dict()
    assert parameters["model"]["architecture"] == architecture
    # what the restart handlers read: the protocol's own batch size and learning rate
    assert {"batch_size", "lr", "epochs"} <= set(parameters["train"])
    assert builder.train.metadata.options.max_wallclock_seconds > 0


def test_the_alignn_paper_protocol_is_the_preset(cgcnn_code, dataset_node):
    builder = TrainWorkChain.get_builder_from_protocol(cgcnn_code, dataset_node, protocol="alignn-paper")
    parameters = builder.train.parameters.get_dict()
    assert parameters["model"]["architecture"] == "alignn"
    assert parameters["train"].items() >= PRESETS["alignn-paper"]["train"].items()


def test_overrides_win_and_merge_key_by_key(cgcnn_code, dataset_node, tmp_path):
    overrides = {"max_iterations": 2, "train": {"parameters": {"train": {"epochs": 3}, "skip_invalid": True}}}
    builder = TrainWorkChain.get_builder_from_protocol(cgcnn_code, dataset_node, "fast", overrides)
    parameters = builder.train.parameters.get_dict()
    assert parameters["train"]["epochs"] == 3 and parameters["train"]["batch_size"] == 32
    assert parameters["skip_invalid"] is True and parameters["model"]["n_conv"] == 2
    assert builder.max_iterations.value == 2
    # the same from a YAML file
    (tmp_path / "overrides.yaml").write_text("train:\n  parameters:\n    model:\n      n_conv: 1\n")
    builder = TrainWorkChain.get_builder_from_protocol(
        cgcnn_code, dataset_node, "fast", tmp_path / "overrides.yaml"
    )
    model = builder.train.parameters.get_dict()["model"]
    assert model == {"architecture": "cgcnn", "atom_fea_len": 32, "n_conv": 1, "h_fea_len": 64}


def test_unknown_protocol_or_architecture_is_a_clear_error(cgcnn_code, dataset_node):
    with pytest.raises(
        ConfigError, match=r"unknown protocol 'fastest'; choose from \['alignn-paper', 'fast'"
    ):
        TrainWorkChain.get_builder_from_protocol(cgcnn_code, dataset_node, protocol="fastest")
    with pytest.raises(ConfigError, match="no recipe for the architecture 'cgcnn'"):
        TrainWorkChain.get_builder_from_protocol(
            cgcnn_code, dataset_node, protocol="alignn-paper", architecture="cgcnn"
        )


def test_the_fast_protocol_trains_for_real(cgcnn_code, dataset_node):
    builder = TrainWorkChain.get_builder_from_protocol(cgcnn_code, dataset_node, protocol="fast")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    metrics = results["metrics"].get_dict()
    assert 1 <= metrics["epochs_run"] <= 30 and metrics["stopped_reason"] in ("completed", "early_stopping")
    assert results["model"].base.attributes.get("targets") == ["emt_energy"]
