"""Pretrained ensembles shipped with the package, loaded offline by name.

``aiida-cgcnn pretrained list`` prints the registry; ``Ensemble.pretrained(NAME)``
(:mod:`aiida_cgcnn.ensemble`) loads a model, its files checked against the sha256 of its card;
``aiida-cgcnn pretrained build NAME`` rebuilds one from the project's real data with its recipe.
"""

from .recipes import RECIPES, Recipe, recipe
from .registry import MODELS_DIR, available, card, member_files, model_label

__all__ = ["MODELS_DIR", "RECIPES", "Recipe", "available", "card", "member_files", "model_label", "recipe"]
