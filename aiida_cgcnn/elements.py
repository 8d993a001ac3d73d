"""Element ranges the package supports."""

__all__ = ["MAX_ATOMIC_NUMBER", "NOBLE_GASES"]

#: Elements the atom-feature table covers (H to Fm); heavier elements lack the Table II data.
MAX_ATOMIC_NUMBER = 100
NOBLE_GASES = frozenset({2, 10, 18, 36, 54, 86})
