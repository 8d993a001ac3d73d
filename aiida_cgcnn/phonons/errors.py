"""Errors of the phonon references, each naming the calculation or structure it is about."""

from __future__ import annotations

__all__ = ["PhononInputError"]


class PhononInputError(ValueError):
    """Phonon input that cannot give a reference: missing or inconsistent forces, cells or settings.

    A ``ValueError``, so the command line maps it to exit code 4 (invalid input).
    """
