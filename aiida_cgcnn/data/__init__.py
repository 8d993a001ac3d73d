"""AiiDA data types: datasets and models as nodes."""

from .dataset import CrystalDatasetData
from .model import ModelData

__all__ = ["CrystalDatasetData", "ModelData"]
