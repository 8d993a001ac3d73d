"""The command's side of the parser contract: ``status.json`` to an exit code, shared by the parsers."""

from __future__ import annotations

import csv
import json
import re
from typing import Any

from aiida import orm
from aiida.engine import ExitCode

from ..calculations.remote_cache import remote_cache_directory

__all__ = [
    "STATUS_TO_EXIT",
    "CorruptedOutputError",
    "cancelled_by_scheduler",
    "check_csv_rows",
    "exit_code_of_corrupted",
    "exit_code_of_status",
    "exit_code_without_status",
    "read_status",
    "read_text",
    "tail",
]

#: ``status`` of ``status.json`` -> exit code label (``completed`` and ``time_budget`` are no failures)
STATUS_TO_EXIT = {
    "invalid_input": "ERROR_INVALID_DATASET",
    "missing_input": "ERROR_REMOTE_DATASET_MISSING",
    "diverged": "ERROR_LOSS_DIVERGED",
    "out_of_memory": "ERROR_OUT_OF_MEMORY",
    "error": "ERROR_COMMAND_FAILED",
    "disk_full": "ERROR_DISK_FULL",
}
#: What a job cancelled by its scheduler leaves in the scheduler's stderr, in this order: SLURM's
#: slurmstepd line (a walltime kill, "... DUE TO TIME LIMIT", is aiida-core's exit 120 already), and the
#: line bash writes for a command that a SIGTERM ended (qdel, a direct kill)
_CANCELLED = (
    re.compile(r"\*\*\* job \d+ (?:on \S+ )?cancelled at (?:(?!due to time limit).)*$", re.I | re.M),
    re.compile(r"^(?:.*line \d+: +\d+ )?terminated\b.*$", re.I | re.M),
)
#: The command's own words for a full disk on its stderr, and the system's for a write that failed
_DISK_FULL = re.compile(r"error \[disk_full\]|no space left on device|disk quota exceeded", re.IGNORECASE)
TRACEBACK_LINES = 5


class CorruptedOutputError(ValueError):
    """A retrieved file that is there but cannot be read as what the command writes."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


def read_text(retrieved: orm.FolderData, name: str) -> str:
    """The retrieved file ``name`` as text; FileNotFoundError if absent, CorruptedOutputError if it is
    not UTF-8 (garbage bytes)."""
    content = retrieved.base.repository.get_object_content(name, mode="rb")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorruptedOutputError(name, f"not UTF-8 text (byte {error.start} of {len(content)})") from None


def check_csv_rows(text: str, filename: str, skip: int = 0) -> list[list[str]]:
    """The rows of the CSV ``text`` after ``skip`` comment lines, header first; CorruptedOutputError
    unless it ends with a line break and every row has as many fields as its header: a file cut
    mid-row, or with a column too many or too few."""
    rows = list(csv.reader(text.splitlines()[skip:]))
    if not rows or not rows[0]:
        raise CorruptedOutputError(filename, "empty, no header")
    if not text.endswith("\n"):  # the command's CSV writers end every line, the last one too
        raise CorruptedOutputError(filename, "cut short: its last line has no line break")
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2 + skip):
        if len(row) != width:
            raise CorruptedOutputError(
                filename,
                f"line {number} has {len(row)} fields, the header {width} (cut mid-row, or corrupted)",
            )
    return rows


def read_status(retrieved: orm.FolderData) -> dict[str, Any] | None:
    """The command's ``status.json`` (retrieved files land at the root of ``retrieved``), None if absent;
    CorruptedOutputError if it is there but is no JSON object with a ``status`` (truncated, garbage)."""
    try:
        text = read_text(retrieved, "status.json")
    except (FileNotFoundError, OSError):
        return None
    try:
        status = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptedOutputError("status.json", f"not valid JSON ({error})") from None
    if not isinstance(status, dict) or not isinstance(status.get("status"), str):
        raise CorruptedOutputError("status.json", "not a JSON object with a 'status' string")
    return status


def exit_code_of_corrupted(process: orm.CalcJobNode, error: CorruptedOutputError) -> ExitCode:
    """``ERROR_CORRUPTED_OUTPUT`` naming the file and what is wrong; the scheduler's verdict (a job killed
    while writing) comes first."""
    if process.exit_status:
        return ExitCode(process.exit_status, process.exit_message)
    exit_codes = process.process_class.exit_codes
    return exit_codes.ERROR_CORRUPTED_OUTPUT.format(filename=error.filename, message=error.reason)  # type: ignore[no-any-return]


def tail(retrieved: orm.FolderData, name: str, lines: int = TRACEBACK_LINES) -> str:
    """The last ``lines`` lines of the retrieved file ``name``, empty if it is missing."""
    try:
        text = retrieved.base.repository.get_object_content(name, mode="r")
    except (FileNotFoundError, OSError):
        return ""
    return "\n".join(str(text).strip().splitlines()[-lines:])


def _failure_message(status: dict[str, Any]) -> str:
    """The status's message, and for an unexpected error the end of its traceback."""
    message = str(status.get("message", ""))
    trace = status.get("traceback")
    if isinstance(trace, list):
        trace = "".join(str(line) for line in trace)
    if trace:
        end = "\n".join(str(trace).strip().splitlines()[-TRACEBACK_LINES:])
        message = f"{message}\n{end}" if message and message not in end else end
    return message


def exit_code_of_status(
    process: orm.CalcJobNode, status: dict[str, Any], allowed: set[str]
) -> ExitCode | None:
    """The exit code for a failure ``status`` of the command (those in ``allowed``), None otherwise."""
    state = status.get("status")
    if state not in STATUS_TO_EXIT or state not in allowed:
        return None
    exit_codes = process.process_class.exit_codes
    cache = remote_cache_directory(process.computer) if process.computer is not None else "?"
    exit_code = getattr(exit_codes, STATUS_TO_EXIT[state])
    return exit_code.format(message=_failure_message(status), cache=cache)  # type: ignore[no-any-return]


def cancelled_by_scheduler(process: orm.CalcJobNode, retrieved: orm.FolderData) -> str | None:
    """The line that says the scheduler cancelled the job (its accounting's ``State``, or the
    scheduler's stderr), None if nothing does."""
    info = process.get_detailed_job_info() or {}
    lines = str(info.get("stdout", "")).splitlines()
    if info.get("retval", 1) == 0 and len(lines) >= 2:
        fields = dict(zip(lines[0].split("|"), lines[1].split("|"), strict=False))
        if fields.get("State", "").startswith("CANCELLED"):
            return f"State {fields['State']}"
    name = process.get_option("scheduler_stderr") or "_scheduler-stderr.txt"
    stderr = tail(retrieved, name, lines=50)
    for pattern in _CANCELLED:
        found = pattern.search(stderr)
        if found:
            return found.group(0).strip()
    return None


def exit_code_without_status(process: orm.CalcJobNode, retrieved: orm.FolderData) -> ExitCode:
    """No ``status.json``: the scheduler's verdict (e.g. a walltime kill, exit 1xx) comes first, then a
    cancellation in the scheduler's stderr, then the command's stderr (a full disk: status.json could
    not be written)."""
    if process.exit_status:
        return ExitCode(process.exit_status, process.exit_message)
    exit_codes = process.process_class.exit_codes
    cancelled = cancelled_by_scheduler(process, retrieved)
    if cancelled is not None:
        return exit_codes.ERROR_SCHEDULER_JOB_CANCELLED.format(message=cancelled)  # type: ignore[no-any-return]
    stderr = tail(retrieved, "aiida.err")
    if _DISK_FULL.search(stderr):
        cache = remote_cache_directory(process.computer) if process.computer is not None else "?"
        message = f"it left no status.json; its stderr ends with:\n{stderr}"
        return exit_codes.ERROR_DISK_FULL.format(message=message, cache=cache)  # type: ignore[no-any-return]
    if stderr:
        # killed, or crashed before it could write status.json: say so, then how stderr ends
        message = f"it left no status.json; its stderr ends with:\n{stderr}"
        return exit_codes.ERROR_COMMAND_FAILED.format(message=message)  # type: ignore[no-any-return]
    return exit_codes.ERROR_MISSING_OUTPUT.format(filename="status.json")  # type: ignore[no-any-return]
