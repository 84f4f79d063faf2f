"""Pictures for people: colour-mapped depth, motion paths drawn over an image, labelled panels.

Pure NumPy and Pillow, so that previews need nothing beyond the package's own dependencies.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from .geometry import backproject, project, trajectory_with_reference
from .imaging import to_uint8

# Control points of a perceptually ordered map from dark blue (near) through green and yellow to dark red (far).
_MAP = np.array(
    [[48, 18, 59], [70, 107, 227], [41, 187, 236], [49, 242, 153], [164, 252, 60], [238, 207, 58], [251, 128, 34],
     [208, 47, 5], [122, 4, 3]], dtype=np.float64) / 255.0


def to_u8(x: torch.Tensor) -> np.ndarray:
    """An image tensor (3, H, W), or (1, 3, H, W), in [0, 1] -> (H, W, 3) uint8."""
    x = x[0] if x.dim() == 4 else x
    return to_uint8(x.detach().float().permute(1, 2, 0).cpu().numpy())


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8; 0 / non-finite (no depth) is black. Inverse depth spacing, near = blue."""
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    d = depth[valid]
    lo = float(np.percentile(d, 2)) if lo is None else lo
    hi = float(np.percentile(d, 98)) if hi is None else hi
    hi = max(hi, lo * 1.001 + 1e-6)
    t = np.clip((1 / np.clip(d, lo, hi) - 1 / lo) / (1 / hi - 1 / lo), 0, 1) * (len(_MAP) - 1)
    i = np.minimum(t.astype(int), len(_MAP) - 2)
    w = (t - i)[:, None]
    out[valid] = np.round((_MAP[i] * (1 - w) + _MAP[i + 1] * w) * 255).astype(np.uint8)
    return out


def pixel_paths(depth: np.ndarray, poses: np.ndarray, K: np.ndarray, step: int = 40) -> np.ndarray:
    """Where a grid of reference pixels lands at each of the 2n+1 instants: (instants, P, 2)."""
    H, W = depth.shape
    d = torch.from_numpy(np.where(depth > 0, depth, np.nan)).double()[None, None]
    traj = trajectory_with_reference(torch.from_numpy(poses).double()[None])[0]
    ys, xs = np.mgrid[step // 2 : H : step, step // 2 : W : step]
    keep = np.isfinite(depth[ys, xs]) & (depth[ys, xs] > 0)
    X = backproject(torch.nan_to_num(d, nan=1.0), torch.from_numpy(K).double(), validate=False)[0][ys[keep], xs[keep]]
    Xk = torch.einsum("kij,pj->kpi", traj[:, :3, :3], X) + traj[:, None, :3, 3]
    return project(Xk, torch.from_numpy(K).double().expand(len(traj), 3, 3), validate=False).numpy()


def draw_paths(image: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """Draw each pixel's path over the exposure (yellow, with a red dot at the reference instant)."""
    im = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(im)
    ref = paths.shape[0] // 2
    for p in range(paths.shape[1]):
        pts = [tuple(map(float, paths[k, p])) for k in range(paths.shape[0])]
        draw.line(pts, fill=(255, 230, 0), width=2)
        x, y = pts[ref]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(255, 40, 40))
    return np.asarray(im)


def labelled_row(images: list[np.ndarray], labels: list[str], pad: int = 4) -> np.ndarray:
    """Images side by side, each with a caption strip above it."""
    h = max(i.shape[0] for i in images)
    strip = 14
    tiles = []
    for img, text in zip(images, labels):
        tile = Image.new("RGB", (img.shape[1], h + strip), (255, 255, 255))
        tile.paste(Image.fromarray(img), (0, strip))
        ImageDraw.Draw(tile).text((2, 1), text, fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    gap = np.full((h + strip, pad, 3), 255, np.uint8)
    parts = [tiles[0]]
    for t in tiles[1:]:
        parts += [gap, t]
    return np.concatenate(parts, axis=1)


def stack_rows(rows: list[np.ndarray], pad: int = 4) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        r = np.pad(r, ((0, pad), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        out.append(r)
    return np.concatenate(out, axis=0)


def splat_points(points: np.ndarray, colors: np.ndarray, K: np.ndarray, H: int, W: int, yaw_deg: float = 25.0) -> np.ndarray:
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
