"""Work chains of the plugin."""

from .train import TrainWorkChain

__all__ = ["TrainWorkChain"]
