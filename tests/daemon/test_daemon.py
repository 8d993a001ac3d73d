"""Submission through the daemon with the embedded ZeroMQ broker: the production path, no external service."""

from aiida import orm

from aiida_cgcnn.workflows.train import TrainWorkChain


def test_training_work_chain_through_the_daemon(submit_and_await, cgcnn_code, dataset_node, small_model):
    builder = TrainWorkChain.get_builder()
    builder.train.code = cgcnn_code
    builder.train.dataset = dataset_node
    builder.train.parameters = orm.Dict({"model": small_model, "train": {"epochs": 2, "batch_size": 8}})
    builder.train.metadata.options.max_wallclock_seconds = 600
    node = submit_and_await(builder, timeout=300)
    assert node.is_finished_ok, node.exit_message
    assert node.outputs.model.base.attributes.get("targets") == ["emt_energy"]
    assert node.outputs.metrics["epochs_run"] == 2
