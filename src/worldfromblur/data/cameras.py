"""Known cameras, and the NumPy front ends of :mod:`worldfromblur.geometry` that the data builders use.

The data side (engine, RGB-D readers and builders) works in NumPy float64; these functions call the geometry module
on float64 tensors, so each formula exists once. Intrinsics are in the package's pixel convention (see geometry).
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import (
    interpolate_trajectory,
    invert_pose,
    pose_from_uv,
    quaternion_from_rotation,
    rotation_from_quaternion,
    scale_intrinsics,
)

# NYU Depth v2's Kinect colour camera (NYU toolbox, camera_params.m: fx_rgb, fy_rgb, cx_rgb, cy_rgb), 640 x 480.
# The toolbox's principal point is 1-based (MATLAB); subtract 1 for 0-based pixel centres.
NYU_KINECT_RGB = (
    np.array([[518.8579, 0.0, 325.5824 - 1.0], [0.0, 519.4696, 253.7362 - 1.0], [0.0, 0.0, 1.0]]),
    (640, 480),
)


def scale_intrinsics_np(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """NumPy front end of :func:`worldfromblur.geometry.scale_intrinsics`."""
    return scale_intrinsics(torch.as_tensor(K, dtype=torch.float64), sx, sy).numpy()


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def rotation_matrix(u: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3), radians."""
    u = _t(u)
    return pose_from_uv(u, torch.zeros_like(u))[..., :3, :3].numpy()


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (w, x, y, z) -> (N, 3, 3) rotation matrices."""
    return rotation_from_quaternion(_t(q)).numpy()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (w, x, y, z), w >= 0."""
    return quaternion_from_rotation(_t(R)).numpy()


def interpolate_poses_uv(traj: np.ndarray, subframes: int) -> np.ndarray:
    """(2n + 1, 4, 4) trajectory -> (2n * subframes + 1, 4, 4), by :func:`worldfromblur.geometry.interpolate_trajectory`
    (linear in the rotation vector and translation between instants)."""
    return interpolate_trajectory(_t(traj)[None], subframes)[0].numpy()


def rotation_angle_deg(T: np.ndarray) -> np.ndarray:
    """The angle (degrees) of the rotation of each (..., 3, 3) or (..., 4, 4) matrix."""
    c = np.clip((np.trace(np.asarray(T)[..., :3, :3], axis1=-2, axis2=-1) - 1) / 2, -1, 1)
    return np.rad2deg(np.arccos(c))


def steps_per_frame(traj: np.ndarray) -> dict[str, float]:
    """Mean camera motion between consecutive instants of a (2n + 1, 4, 4) trajectory: the rotation angle (degrees)
    and translation (cm) of each relative step ``T_k^-1 T_(k+1)``, the one definition every dataset builder uses."""
    T = _t(traj)
    steps = invert_pose(T[:-1]) @ T[1:]
    return {"rotation_deg_per_frame": float(rotation_angle_deg(steps.numpy()).mean()),
            "translation_cm_per_frame": float(100 * steps[:, :3, 3].norm(dim=1).mean())}
