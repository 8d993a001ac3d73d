"""Self-contained checkpoints, written atomically and loaded without executing pickled code.

A checkpoint holds everything a prediction needs (weights with the atom-feature table and target
standardisation as buffers, model config, graph settings, target names and units, extra-feature
names and scales) and everything a resume needs (optimizer and scheduler state, epoch, history,
split). Only tensors, numbers, strings, lists and dicts are stored, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import datetime
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint", "write_atomically"]

CHECKPOINT_FORMAT = "aiida-cgcnn-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("model_config", "graph_settings", "state_dict", "targets")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus format and version fields to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        **payload,
    }
    # serialised in memory first: torch's writer turns a full disk into an opaque RuntimeError, a plain
    # write raises OSError with its errno (ENOSPC, EDQUOT), which the command reports as such
    buffer = io.BytesIO()
    torch.save(data, buffer)
    write_atomically(path, buffer.getbuffer())
    return path


def write_atomically(path: str | os.PathLike, content: bytes | memoryview | str) -> Path:
    """Write ``content`` to ``path`` through a temporary file in its directory, then rename it: a write
    that fails (a full disk, a killed job) leaves the previous file intact and no partial one."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False)
    try:
        if isinstance(content, str):  # text files keep the mode a plain write gives (checkpoints: 0600)
            os.chmod(handle.name, 0o666 & ~_umask())
        with handle:
            handle.write(data)  # a full disk raises here or on closing (NFS reports it at close)
        os.replace(handle.name, path)
    except OSError as error:
        if error.filename is None:  # name the file meant, not the temporary one
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto ``map_location`` (CPU by default, so a
    checkpoint trained on a GPU loads anywhere)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{str(path)!r} is not a loadable aiida-cgcnn checkpoint ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an aiida-cgcnn checkpoint")
    if data.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{str(path)!r} was written by a newer aiida-cgcnn; upgrade to read it")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{str(path)!r} lacks {missing}")
    return data
