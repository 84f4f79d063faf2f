"""The networks: the paper's modules, the compact preset, and the cycle that joins them."""

from .config import PRESETS, ModelConfig, load_model_config, preset
from .cycle import WorldFromBlur

__all__ = ["PRESETS", "ModelConfig", "WorldFromBlur", "load_model_config", "preset"]
