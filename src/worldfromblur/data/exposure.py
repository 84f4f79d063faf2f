"""NumPy-side exposure helpers shared by the synthetic engine and the RGB-D builders."""

from __future__ import annotations

import numpy as np

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
