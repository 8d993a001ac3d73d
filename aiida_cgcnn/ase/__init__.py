"""ASE calculator returning predicted properties for ``Atoms``."""

from .calculator import CGCNNCalculator, property_name

__all__ = ["CGCNNCalculator", "property_name"]
