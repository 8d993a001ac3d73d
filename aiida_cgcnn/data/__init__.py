"""AiiDA data types: datasets and models as nodes."""

from .dataset import CrystalDatasetData
from .ensemble import EnsembleData
from .model import ModelData

__all__ = ["CrystalDatasetData", "EnsembleData", "ModelData"]
