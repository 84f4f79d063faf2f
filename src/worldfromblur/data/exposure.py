"""Exposure helpers shared by the synthetic engine, the RGB-D builders and the stream."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..viz import pixel_paths


def choose_subframes(depth: np.ndarray, poses: np.ndarray, K: np.ndarray, subframe_px: float, max_subframes: int) -> tuple[int, dict]:
    """Instants per frame interval so that no pixel steps more than ``subframe_px``; and the window's blur statistics."""
    d = np.where(depth > 0, depth, np.nan)
    filled = np.where(np.isfinite(d), d, np.nanmedian(d))
    paths = pixel_paths(filled, poses, K, step=8)
    step = np.linalg.norm(np.diff(paths, axis=0), axis=-1)  # (2n, P)
    s = int(np.clip(np.ceil(step.max() / subframe_px), 1, max_subframes))
    length = step.sum(0)
    return s, {"blur_px_median": float(np.median(length)), "blur_px_max": float(length.max())}


FILL_CHUNK = 64
"""Frames :func:`fill_holes` fills at once: its float64 pyramid over a whole pool of thousands of frames would take
several times the pool's memory."""


def fill_holes(depth: torch.Tensor) -> torch.Tensor:
    """(N, H, W) depth with holes (0) filled by pull-push over a pyramid, for warping; readings kept. Each frame is
    filled on its own (the result does not depend on the other frames), :data:`FILL_CHUNK` frames at a time."""
    if depth.shape[0] > FILL_CHUNK:
        out = torch.empty_like(depth)
        for i in range(0, depth.shape[0], FILL_CHUNK):
            out[i:i + FILL_CHUNK] = _fill_holes(depth[i:i + FILL_CHUNK])
        return out
    return _fill_holes(depth)


def _fill_holes(depth: torch.Tensor) -> torch.Tensor:
    d = depth[:, None].double()
    valid = (d > 0).double()
    levels = [(d * valid, valid)]
    while min(levels[-1][0].shape[-2:]) > 1 and bool((levels[-1][1] == 0).any()):
        s, c = levels[-1]
        levels.append((F.avg_pool2d(s, 2, ceil_mode=True), F.avg_pool2d(c, 2, ceil_mode=True)))
    filled = levels[-1][0] / levels[-1][1].clamp_min(1e-12)
    for s, c in reversed(levels[:-1]):
        up = F.interpolate(filled, size=s.shape[-2:], mode="nearest")
        filled = torch.where(c > 0, s / c.clamp_min(1e-12), up)
    return torch.where(d > 0, d, filled)[:, 0].to(depth.dtype)
