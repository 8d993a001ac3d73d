"""Errors of the core, each naming what went wrong and what to do about it."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DatasetNotFoundError",
    "InvalidStructureError",
    "plain",
]


def plain(value):
    """``value`` with NumPy arrays and scalars turned into Python ones, for messages users read
    (``[False, False, True]``, not ``[np.False_, np.False_, np.True_]``)."""
    if hasattr(value, "tolist"):  # NumPy arrays and scalars alike
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


class InvalidStructureError(ValueError):
    """A structure that cannot become a crystal graph.

    Carries the structure's identifier so that a batch can skip it and report it.
    """

    def __init__(self, structure_id: str, reason: str, hint: str = ""):
        self.structure_id = str(structure_id)
        self.reason = reason
        self.hint = hint
        message = f"structure {self.structure_id!r}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class DatasetError(ValueError):
    """A dataset as a whole is unusable (empty, duplicate ids, unreadable, wrong format)."""


class DatasetNotFoundError(DatasetError):
    """A dataset file that should exist (e.g. in a remote cache) does not."""


class CheckpointError(ValueError):
    """A checkpoint file that is not a valid aiida-cgcnn checkpoint."""


class ConfigError(ValueError):
    """Settings a user gave (a config file, options, parameters) that cannot be used."""
