"""A finished training continued for more epochs through the CalcJob: ``get_builder_restart()`` of the
finished calculation, its remote folder as ``parent_folder`` and more epochs in ``parameters``."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_cgcnn.calculations.train import TrainCalculation


def test_a_finished_calculation_continues_for_more_epochs(cgcnn_code, dataset_node, small_parameters):
    parameters = {**small_parameters, "train": {**small_parameters["train"], "epochs": 3}}
    builder = TrainCalculation.get_builder()
    builder.code = cgcnn_code
    builder.dataset = dataset_node
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = 1800
    first, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert list(first["learning_curve"].get_array("epoch")) == [0, 1, 2]

    restart = node.get_builder_restart()
    restart.parent_folder = node.outputs.remote_folder
    restart.parameters = orm.Dict({**parameters, "train": {**parameters["train"], "epochs": 5}})
    results, continued = run_get_node(restart)
    assert continued.is_finished_ok, (continued.exit_status, continued.exit_message)
    curve = results["learning_curve"]
    assert list(curve.get_array("epoch")) == [0, 1, 2, 3, 4]
    assert np.array_equal(curve.get_array("train_loss")[:3], first["learning_curve"].get_array("train_loss"))
    assert results["metrics"].get_dict()["epochs_run"] == 5
    # the continued model is trained further than the first one, from the first one's weights
    assert results["model"].uuid != first["model"].uuid
