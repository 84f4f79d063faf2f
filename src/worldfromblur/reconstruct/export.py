"""Writers for the reconstruction's files: PLY point clouds and meshes, TUM trajectories, 16-bit depth.

Every writer takes plain NumPy arrays, so it serves any caller, and writes in one go to the path it is given (the
caller writes into a temporary folder that is renamed when complete).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.format import depth_to_mm
from ..data.cameras import matrix_to_quat
from ..geometry import invert_pose, trajectory_with_reference

PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def _ply_header(n_vertices: int, n_faces: int, comments: list[str]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments),
             f"element vertex {n_vertices}", "property float x", "property float y", "property float z",
             "property uchar red", "property uchar green", "property uchar blue"]
    if n_faces:
        lines += [f"element face {n_faces}", "property list uchar int vertex_indices"]
    return ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")


def _vertices(points: np.ndarray, colors: np.ndarray) -> np.ndarray:
    v = np.empty(len(points), PLY_VERTEX)
    for i, axis in enumerate("xyz"):
        v[axis] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        v[c] = colors[:, i]
    return v


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, faces: np.ndarray | None = None,
              comments: list[str] = ()) -> None:
    """Binary little-endian PLY: vertices (N, 3) float metres with (N, 3) uint8 colours, optional triangles (F, 3).

    The layout (float x, y, z; uchar red, green, blue; faces as ``list uchar int vertex_indices``) is the one MeshLab,
    CloudCompare, Open3D and Blender all read.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    n_faces = 0 if faces is None else len(faces)
    with open(path, "wb") as f:
        f.write(_ply_header(len(points), n_faces, list(comments)))
        f.write(_vertices(points, colors).tobytes())
        if n_faces:
            rec = np.empty(n_faces, np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
            rec["n"], rec["i"] = 3, faces
            f.write(rec.tobytes())


def depth_mesh(depth: np.ndarray, max_ratio: float = 1.05) -> np.ndarray:
    """Triangles over the pixel grid of a depth map, without the ones that span a depth discontinuity.

    Each 2x2 block of pixels gives two triangles; a triangle is dropped when a vertex has no depth or when its largest
    and smallest depth differ by more than ``max_ratio`` (a disocclusion edge: the surface behind it was never seen).
    Returns (F, 3) int32 vertex indices into the row-major pixels.
    """
    H, W = depth.shape
    idx = np.arange(H * W).reshape(H, W)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    z = depth.ravel()[faces]
    ok = (z > 0).all(1) & np.isfinite(z).all(1)
    ok &= z.max(1) <= max_ratio * np.where(ok, z.min(1), 1.0)
    return faces[ok].astype(np.int32)


def write_depth_png(path: Path, depth: np.ndarray) -> None:
    """16-bit PNG of z-depth in millimetres (0 = no depth); values above 65.535 m are clipped."""
    Image.fromarray(depth_to_mm(depth)).save(path, format="PNG")


def camera_to_reference(poses: np.ndarray) -> np.ndarray:
    """(2n, 4, 4) reference-to-instant poses -> (2n + 1, 4, 4) camera-to-reference poses, reference (identity) in the
    middle: each one maps a point from instant k's camera frame into the reference camera's frame."""
    traj = trajectory_with_reference(torch.as_tensor(poses, dtype=torch.float64)[None])[0]
    return invert_pose(traj).numpy()


def quaternions_xyzw(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (qx, qy, qz, qw) with qw >= 0, TUM's order."""
    return matrix_to_quat(R)[..., [1, 2, 3, 0]]


def write_tum(path: Path, poses: np.ndarray, fps: float) -> None:
    """TUM RGB-D trajectory file of the 2n + 1 instants: ``timestamp tx ty tz qx qy qz qw`` per line, camera-to-reference
    (the reference instant is the identity at timestamp 0; timestamps are seconds, ``1 / fps`` apart)."""
    c2r = camera_to_reference(poses)
    n = (len(c2r) - 1) // 2
    q = quaternions_xyzw(c2r[:, :3, :3])
    lines = ["# world-from-blur camera trajectory during the exposure: camera-to-reference poses, reference = identity",
             "# timestamp tx ty tz qx qy qz qw   (seconds relative to the reference instant; metres)"]
    for k in range(len(c2r)):
        t = c2r[k, :3, 3]
        lines.append(" ".join(f"{x:.9f}" for x in [(k - n) / fps, *t, *q[k]]))
    Path(path).write_text("\n".join(lines) + "\n")

