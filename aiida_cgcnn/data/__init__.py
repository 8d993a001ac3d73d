"""AiiDA data types: datasets, models and prediction records as nodes."""

from .dataset import CrystalDatasetData
from .ensemble import EnsembleData
from .model import ModelData
from .prediction import PredictionData

__all__ = ["CrystalDatasetData", "EnsembleData", "ModelData", "PredictionData"]
