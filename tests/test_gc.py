"""Pausing the garbage collector around bulk work."""

import gc

import pytest

from aiida_cgcnn._gc import without_gc


@without_gc
def _state(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("stop")
    return gc.isenabled()


def test_the_collector_is_paused_inside_and_on_again_after_a_return_or_an_error():
    assert gc.isenabled()
    assert _state() is False and gc.isenabled()
    with pytest.raises(RuntimeError, match="stop"):
        _state(fail=True)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
