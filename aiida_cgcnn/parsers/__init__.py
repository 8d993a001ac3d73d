"""Parsers of the plugin's CalcJobs."""

from .predict import PredictParser
from .train import TrainParser

__all__ = ["PredictParser", "TrainParser"]
