"""Training: typed configs and recipes, the data sources, the trainer, and the one path from a recipe to a trained,
evaluated, exported model (:func:`~worldfromblur.training.recipe.run_recipe`)."""

from .config import TrainConfig, load_config
from .recipe import Recipe, one_stage, read_recipe, run_recipe
from .trainer import train

__all__ = ["Recipe", "TrainConfig", "load_config", "one_stage", "read_recipe", "run_recipe", "train"]
