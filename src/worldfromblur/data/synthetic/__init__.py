"""The synthetic RGB-D blur engine: procedural rooms, hand-held exposures, exact depth and poses."""

from .build import plan_synthetic, synthetic_renderer
from .engine import SyntheticOptions, render_sample

__all__ = ["SyntheticOptions", "plan_synthetic", "render_sample", "synthetic_renderer"]
