"""What every ``aiida-cgcnn`` command shares: exit codes, ``status.json`` and the error guard.

The guard maps the package's own errors (bad input, diverged loss, out of memory) to their exit codes
with a one-paragraph message. Anything else is a bug: exit 1 with its traceback, on standard error and
in ``status.json`` (``status`` "error", ``message``, ``traceback``) where the CalcJob parsers read it.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["EXIT_CODES", "checked", "guarded", "input_errors", "write_skipped", "write_status"]

EXIT_CODES = {
    "completed": 0,
    "error": 1,
    "usage": 2,
    "time_budget": 3,
    "invalid_input": 4,
    "diverged": 5,
    "out_of_memory": 6,
    "missing_input": 7,
}
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def write_status(output_dir: Path | None, status: str, message: str = "", **extra: Any) -> None:
    """Write ``status.json`` (status, exit code, message and ``extra`` keys) to ``output_dir``."""
    if output_dir is None:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"status": status, "exit_code": EXIT_CODES[status], "message": message, **extra}
    (output_dir / "status.json").write_text(json.dumps(payload, indent=2))


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


def _classify(error: BaseException) -> tuple[str, str] | None:
    """(status, message) of one of the package's errors; None for anything else (a bug)."""
    from ..errors import DatasetNotFoundError
    from ..training.trainer import LossDivergedError

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


def guarded(output_option: str) -> Callable[[F], F]:
    """Run a command so that every failure leaves an exit code and a ``status.json`` in the directory
    of the option ``output_option`` (beside it, when that option is a file)."""

    def decorator(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = kwargs.get(output_option)
            output_dir = Path(target) if target is not None else None
            if output_dir is not None and output_dir.suffix:  # a file path: status beside it
                output_dir = output_dir.parent
            try:
                return function(*args, **kwargs)
            except click.exceptions.ClickException:
                raise  # usage errors: click prints them, exit 2
            except Exception as error:
                known = _classify(error)
                if known is None:
                    text = traceback.format_exc()
                    message = f"unexpected {type(error).__name__}: {error} (a bug: please report it)"
                    write_status(output_dir, "error", message, traceback=text)
                    click.echo(text.rstrip("\n"), err=True)
                    click.echo(f"Error [error]: {message}", err=True)
                    sys.exit(EXIT_CODES["error"])
                status, message = known
            write_status(output_dir, status, message)
            click.echo(f"Error [{status}]: {message}", err=True)
            sys.exit(EXIT_CODES[status])

        return wrapper  # type: ignore[return-value]

    return decorator
