"""Known cameras: intrinsics at their native resolution, in the package's pixel convention (see geometry)."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import scale_intrinsics

# NYU Depth v2's Kinect colour camera (NYU toolbox, camera_params.m: fx_rgb, fy_rgb, cx_rgb, cy_rgb), 640 x 480.
# The toolbox's principal point is 1-based (MATLAB); subtract 1 for 0-based pixel centres.
NYU_KINECT_RGB = (
    np.array([[518.8579, 0.0, 325.5824 - 1.0], [0.0, 519.4696, 253.7362 - 1.0], [0.0, 0.0, 1.0]]),
    (640, 480),
)


def scale_intrinsics_np(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """NumPy front end of :func:`worldfromblur.geometry.scale_intrinsics`."""
    return scale_intrinsics(torch.as_tensor(K, dtype=torch.float64), sx, sy).numpy()
