"""Caching of the training CalcJob with caching enabled: a failure or a stop is never a cache source,
the time budget (from the walltime) is part of the hash, a run-time switch is not."""

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_cgcnn.calculations.train import TIME_BUDGET_ATTRIBUTE, TrainCalculation

TRAIN = "aiida.calculations:cgcnn.train"


def _builder(code, dataset, parameters, walltime=600, **options):
    builder = TrainCalculation.get_builder()
    builder.code = code
    builder.dataset = dataset
    builder.parameters = orm.Dict(parameters)
    builder.metadata.options.max_wallclock_seconds = walltime
    for key, value in options.items():
        builder.metadata.options[key] = value
    return builder


@pytest.mark.slow
def test_failed_and_stopped_calculations_are_not_cache_sources(cgcnn_code, dataset_node, small_model):
    diverging = {"model": small_model, "train": {"epochs": 3, "batch_size": 8, "optimizer": "sgd", "lr": 1e4}}
    stopping = {
        "model": small_model,
        "train": {"epochs": 200, "batch_size": 8, "time_budget": 1.0, "time_margin": 0.0},
    }
    codes = TrainCalculation.exit_codes
    for parameters, status in (
        (diverging, codes.ERROR_LOSS_DIVERGED),
        (stopping, codes.STOPPED_BEFORE_WALLTIME),
    ):
        with enable_caching(identifier=TRAIN):
            _, first = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
            _, second = run_get_node(_builder(cgcnn_code, dataset_node, parameters))
        assert first.exit_status == second.exit_status == status.status
        assert first.base.caching.get_hash() == second.base.caching.get_hash()
        assert not first.base.caching.is_valid_cache
        assert not second.base.caching.is_created_from_cache  # it ran again


@pytest.mark.slow
def test_walltime_is_part_of_the_hash_and_the_reuse_switch_is_not(cgcnn_code, dataset_node, small_model):
    parameters = {"model": small_model, "train": {"epochs": 1, "batch_size": 8, "seed": 2}}
    with enable_caching(identifier=TRAIN):
        _, short = run_get_node(_builder(cgcnn_code, dataset_node, parameters, walltime=600))
        _, longer = run_get_node(_builder(cgcnn_code, dataset_node, parameters, walltime=1200))
        _, same = run_get_node(_builder(cgcnn_code, dataset_node, parameters, walltime=600))
        _, upload = run_get_node(
            _builder(cgcnn_code, dataset_node, parameters, walltime=600, reuse_remote_dataset=False)
        )
    assert short.is_finished_ok and short.base.attributes.get(TIME_BUDGET_ATTRIBUTE) == 600.0
    # a longer walltime is a longer time budget: another hash, a real run
    assert longer.base.caching.get_hash() != short.base.caching.get_hash()
    assert not longer.base.caching.is_created_from_cache
    # the same walltime: cloned from the first
    assert same.base.caching.get_cache_source() == short.uuid
    # uploading the dataset instead of reading the computer's copy changes nothing in the result
    assert upload.base.caching.get_cache_source() == short.uuid
    assert upload.base.caching.get_hash() == short.base.caching.get_hash()
