"""CalcJobs of the plugin: training and prediction on (remote, GPU) computers."""

from .predict import PredictCalculation
from .train import TrainCalculation

__all__ = ["PredictCalculation", "TrainCalculation"]
