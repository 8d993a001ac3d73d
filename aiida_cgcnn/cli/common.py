"""What every ``aiida-cgcnn`` command shares: exit codes, ``status.json`` and the error guard.

The guard maps the package's own errors (bad input, diverged loss, out of memory) to their exit codes
with a one-paragraph message. Anything else is a bug: exit 1 with its traceback, on standard error and
in ``status.json`` (``status`` "error", ``message``, ``traceback``) where the CalcJob parsers read it.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "EXIT_CODES",
    "RESERVE_BYTES",
    "checked",
    "disk_full_error",
    "guarded",
    "input_errors",
    "load_config",
    "write_skipped",
    "write_status",
]

EXIT_CODES = {
    "completed": 0,
    "error": 1,
    "usage": 2,
    "time_budget": 3,
    "invalid_input": 4,
    "diverged": 5,
    "out_of_memory": 6,
    "missing_input": 7,
    "disk_full": 8,
}
#: bytes held in the output directory while ``train`` runs (see ``guarded``)
RESERVE_BYTES = 64 * 1024
#: errno of a write that failed for want of space: the filesystem, a quota, the largest file allowed
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def write_status(output_dir: Path | None, status: str, message: str = "", **extra: Any) -> None:
    """Write ``status.json`` (status, exit code, message and ``extra`` keys) to ``output_dir``, whole
    or not at all (a full disk leaves none rather than a truncated one)."""
    from ..training.checkpoint import write_atomically

    if output_dir is None:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"status": status, "exit_code": EXIT_CODES[status], "message": message, **extra}
    write_atomically(output_dir / "status.json", json.dumps(payload, indent=2))


def write_skipped(path: Path, skipped: Iterable[Any]) -> None:
    """One ``id<TAB>reason`` line per structure left out."""
    path.write_text("".join(f"{s.id}\t{s.reason}\n" for s in skipped))


def checked(option: str, check: Callable[..., T], *args: Any) -> T:
    """``check(*args)``, checking a value the user gave for ``option`` before any work starts: its
    ``ValueError`` becomes a :class:`~aiida_cgcnn.errors.ConfigError` naming the option."""
    from ..errors import ConfigError

    try:
        return check(*args)
    except ValueError as error:
        raise ConfigError(f"{option}: {error}") from error


def input_errors() -> tuple[type[Exception], ...]:
    """The package's errors for input a user can fix (exit 4)."""
    from ..errors import CheckpointError, ConfigError, DatasetError, InvalidStructureError
    from ..phonons.errors import PhononInputError
    from ..pretrained.registry import UnknownModelError

    return (
        ConfigError,
        DatasetError,
        InvalidStructureError,
        CheckpointError,
        PhononInputError,
        UnknownModelError,
    )


def disk_full_error(error: BaseException) -> OSError | None:
    """The OSError for a full disk or quota (ENOSPC, EDQUOT, EFBIG) that ``error`` is or was raised
    from; None if there is none."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(error: BaseException) -> tuple[str, str] | None:
    """(status, message) of one of the package's errors; None for anything else (a bug)."""
    from ..errors import DatasetNotFoundError
    from ..training.trainer import LossDivergedError

    full = disk_full_error(error)
    if full is not None:
        where = f" writing {full.filename}" if full.filename else ""
        return "disk_full", (
            f"{full.strerror or 'no space left'}{where}: that filesystem (or your quota on it) is full. "
            "Free space there or write elsewhere; the files written before are intact (train replaces "
            "its checkpoints whole: last.pt and best.pt are the last epoch saved, resume from last.pt)"
        )
    if isinstance(error, DatasetNotFoundError):
        return "missing_input", str(error)
    if isinstance(error, input_errors()):
        return "invalid_input", str(error)
    if isinstance(error, LossDivergedError):
        return "diverged", str(error)
    if isinstance(error, MemoryError):
        return "out_of_memory", f"out of host memory ({error}); lower the batch size"
    if isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES):
        return "out_of_memory", f"out of memory ({error}); lower the batch size"
    return None


def _try_write_status(output_dir: Path | None, status: str, message: str, **extra: Any) -> None:
    """``write_status``, saying on standard error when it cannot (the disk that failed is full): the
    exit code and the message on standard error still tell what happened."""
    try:
        write_status(output_dir, status, message, **extra)
    except OSError as error:
        _echo_error(f"could not write status.json to {output_dir}: {error}")


def _echo_error(text: str) -> None:
    """``text`` on standard error, unless that cannot be written either (a job's stderr file on the
    disk that is full): the exit code still tells."""
    try:
        click.echo(text, err=True)
    except OSError:
        pass


def _reserve(output_dir: Path | None, kwargs: dict[str, Any]) -> Path | None:
    """A file of ``RESERVE_BYTES`` in ``output_dir``, given up when the command fails so that
    ``status.json`` and the message fit on a disk that something else filled up; None for a command
    without output directory and for data-parallel training (its ranks end with ``os._exit``)."""
    if output_dir is None or int(kwargs.get("nproc_per_node") or 1) > 1 or "LOCAL_RANK" in os.environ:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(".disk-reserve-*"):  # left by a killed run
        stale.unlink(missing_ok=True)
    path = output_dir / f".disk-reserve-{os.getpid()}"
    path.write_bytes(os.urandom(RESERVE_BYTES))  # random: a compressing filesystem stores all of it
    return path


def guarded(output_option: str, reserve: bool = False) -> Callable[[F], F]:
    """Run a command so that every failure leaves an exit code and a ``status.json`` in the directory
    of the option ``output_option`` (beside it, when that option is a file). With ``reserve``, a little
    space is held there while it runs, for that ``status.json`` should the disk fill up."""

    def decorator(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = kwargs.get(output_option)
            output_dir = Path(target) if target is not None else None
            if output_dir is not None and output_dir.suffix:  # a file path: status beside it
                output_dir = output_dir.parent
            held: Path | None = None
            try:
                held = _reserve(output_dir, kwargs) if reserve else None
                return function(*args, **kwargs)
            except click.exceptions.ClickException:
                raise  # usage errors: click prints them, exit 2
            except Exception as error:
                if held is not None:
                    held.unlink(missing_ok=True)
                known = _classify(error)
                if known is None:
                    text = traceback.format_exc()
                    message = f"unexpected {type(error).__name__}: {error} (a bug: please report it)"
                    _try_write_status(output_dir, "error", message, traceback=text)
                    _echo_error(text.rstrip("\n"))
                    _echo_error(f"Error [error]: {message}")
                    sys.exit(EXIT_CODES["error"])
                status, message = known
            finally:
                if held is not None:
                    held.unlink(missing_ok=True)
            _try_write_status(output_dir, status, message)
            _echo_error(f"Error [{status}]: {message}")
            sys.exit(EXIT_CODES[status])

        return wrapper  # type: ignore[return-value]

    return decorator


CONFIG_SECTIONS = ("model", "train", "graph", "skip_invalid", "atom_properties", "descriptors")


def load_config(path: Path | None) -> dict[str, Any]:
    from ..errors import ConfigError

    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); see docs/cli.md for the format") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object with the sections {list(CONFIG_SECTIONS)}")
    unknown = set(config) - set(CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)} in {path}; use {', '.join(CONFIG_SECTIONS)}")
    return config
