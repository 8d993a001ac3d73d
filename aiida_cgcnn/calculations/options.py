"""What both CalcJobs declare alike: defaults of ``metadata.options`` (set on the spec with its types
intact) and the exit codes of the command they run."""

from __future__ import annotations

from typing import Any, cast

from aiida.engine import CalcJobProcessSpec
from plumpy.ports import InputPort, PortNamespace

__all__ = ["define_command_exit_codes", "set_option_defaults"]


def set_option_defaults(spec: CalcJobProcessSpec, **defaults: Any) -> None:
    """Give the options named in ``defaults`` (``parser_name``, ``resources``, ...) these defaults; an
    option with a default is not required, so ``get_builder_restart()`` works on nodes stored without it."""
    options = cast(PortNamespace, cast(PortNamespace, spec.inputs["metadata"])["options"])
    for name, value in defaults.items():
        port = cast(InputPort, options[name])
        port.default = value
        port.required = False


def define_command_exit_codes(spec: CalcJobProcessSpec) -> None:
    """The exit codes ``cgcnn.train`` and ``cgcnn.predict`` share, in aiida-core's ranges: 100-199 the
    scheduler's verdict, 300-399 critical failures (no handler can help), 400-499 failures the restart
    work chain recovers from. None is a cache source."""
    spec.exit_code(
        170,
        "ERROR_SCHEDULER_JOB_CANCELLED",
        invalidates_cache=True,
        message="The scheduler cancelled the job before the command finished (scancel, qdel, preemption, "
        "or a SIGTERM): {message}",
    )
    spec.exit_code(
        300, "ERROR_MISSING_OUTPUT", invalidates_cache=True, message="The command left no {filename}."
    )
    spec.exit_code(310, "ERROR_INVALID_DATASET", invalidates_cache=True, message="Invalid input: {message}")
    spec.exit_code(
        320,
        "ERROR_CORRUPTED_OUTPUT",
        invalidates_cache=True,
        message="The retrieved {filename} is truncated or corrupted: {message}",
    )
    spec.exit_code(
        330,
        "ERROR_DISK_FULL",
        invalidates_cache=True,
        message="The disk (or quota) of the remote work directory is full: {message}. Free space there, "
        "or give the computer another work directory (or point its `cgcnn_remote_cache` property "
        "elsewhere, {cache}); the checkpoints saved before are intact: resume from the calculation's "
        "remote_folder (parent_folder).",
    )
    spec.exit_code(
        350, "ERROR_COMMAND_FAILED", invalidates_cache=True, message="The command failed: {message}"
    )
    spec.exit_code(
        410,
        "ERROR_REMOTE_DATASET_MISSING",
        invalidates_cache=True,
        message="The dataset expected in the computer's cache {cache} is gone: {message}",
    )
    spec.exit_code(430, "ERROR_OUT_OF_MEMORY", invalidates_cache=True, message="Out of memory: {message}")
