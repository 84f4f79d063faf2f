"""A per-sample figure in the style of the paper's Fig. 7: blurred input, first projected frame, deblurred frame,
last projected frame, ground truth, depth, and a 3D view of the coloured points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..geometry import point_cloud, warp
from ..viz import colorize_depth, labelled_row, to_u8


def render_points(points: np.ndarray, colors: np.ndarray, K: np.ndarray, H: int, W: int, yaw_deg: float = 25.0) -> np.ndarray:
    """Splat coloured points (N, 3) seen from the reference camera turned by ``yaw_deg`` about a pivot at the median
    depth, nearest point winning (a painter's z-buffer). Returns (H, W, 3) uint8 on white."""
    img = np.full((H, W, 3), 255, np.uint8)
    if len(points) == 0:
        return img
    pivot = np.array([0.0, 0.0, float(np.median(points[:, 2]))])
    a = np.deg2rad(yaw_deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    X = (points - pivot) @ R.T + pivot
    front = X[:, 2] > 0.05
    X, C = X[front], colors[front]
    u = np.round(K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2]).astype(int)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    order = np.argsort(-X[inside, 2])  # far first, so near points are written last
    img[v[inside][order], u[inside][order]] = C[inside][order]
    return img


def figure_panel(batch: dict, out: dict, i: int, path: Path) -> None:
    H, W = batch["blurred"].shape[-2:]
    deb, depth, K = out["deblurred"][i : i + 1], out["depth"][i : i + 1].float(), batch["K"][i : i + 1]
    first = warp(deb.float(), depth, out["poses"][i : i + 1, 0].float(), K, padding_mode="border", validate=False)[0]
    last = warp(deb.float(), depth, out["poses"][i : i + 1, -1].float(), K, padding_mode="border", validate=False)[0]
    pts, cols, valid = point_cloud(deb.float(), depth, K, validate=False)
    view = render_points(pts[0][valid[0]].cpu().numpy(), (cols[0][valid[0]].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8),
                         K[0].cpu().numpy(), H, W)
    row = labelled_row(
        [to_u8(batch["blurred"][i]), to_u8(first[0]), to_u8(deb[0]), to_u8(last[0]), to_u8(batch["sharp"][i]),
         colorize_depth(depth[0, 0].cpu().numpy()), view],
        ["(a) blurred", "(b) first frame", "(c) deblurred", "(d) last frame", "(e) ground truth", "(f) depth", "(g) 3D"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)
