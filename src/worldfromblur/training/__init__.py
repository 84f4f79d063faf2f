"""Two-stage training: modules apart with ground truth, then joined in the self-supervised cycle."""

from .config import TrainConfig, load_config
from .trainer import train

__all__ = ["TrainConfig", "load_config", "train"]
