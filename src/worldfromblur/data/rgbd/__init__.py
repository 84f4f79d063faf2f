"""Blurred datasets from real RGB-D video: TUM RGB-D, ICL-NUIM and NYU Depth v2 (raw), in the package's format."""

from .build import RGBDOptions, plan_rgbd
from .readers import Sequence, icl_sequence, nyu_sequence, tum_sequence
from .odometry import align, window_poses

__all__ = ["RGBDOptions", "Sequence", "align", "icl_sequence", "nyu_sequence", "plan_rgbd", "tum_sequence", "window_poses"]
