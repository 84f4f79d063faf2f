"""Pixel values and light: the sRGB transfer curve, 8-bit conversion, PSNR, and the average of a frame stack.

A camera integrates *light* over the exposure (the paper's Eq. 1). Pixel values in an 8-bit photograph are not
light: they went through the sRGB curve. Averaging those values, as the paper does, darkens blurred highlights and
makes streaks of bright objects too faint, so the package's blur synthesis (:func:`worldfromblur.geometry.reblur`,
the synthetic engine, the RGB-D builders and the stream) decodes to linear light with :func:`srgb_to_linear`,
averages, and encodes again with :func:`linear_to_srgb`. :func:`blur_frames` does the same for a stack of frames a
user already has, e.g. consecutive frames of high-frame-rate video (``averaging="srgb"``: the paper's plain
average). :class:`Exposure` describes how a blurred image is formed, for every part of the package that makes one.

Functions here accept NumPy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["Averaging", "Exposure", "srgb_to_linear", "linear_to_srgb", "blur_frames", "to_uint8", "psnr"]

Averaging = Literal["linear", "srgb"]
"""How the instants of an exposure are averaged: "linear" (decode sRGB to linear light, average, encode again, as a
sensor integrates light) or "srgb" (average the sRGB values, the paper's plain average)."""


@dataclass
class Exposure:
    """How one blurred image is formed from the instants of its exposure: the one description the synthetic engine,
    the RGB-D builders and the blur stream extend with their own options (``SyntheticOptions``, ``RGBDOptions``,
    ``StreamOptions``), and whose ``n`` and ``averaging`` the model's config takes over, with these defaults."""

    n: int = 3
    """Half window: the exposure spans 2n + 1 frame instants around the reference one (the paper: n = 3)."""
    fps: float = 30.0
    """Frame rate of those instants (RGB-D video keeps its recorded rate)."""
    subframe_px: float = 1.0
    """Instants are added between two frame instants until no pixel moves more than this many pixels between two."""
    max_subframes: int = 10
    """Cap on the instants per frame interval (1: the paper's plain average of the 2n + 1 frames)."""
    averaging: Averaging = "linear"
    """See :data:`Averaging`."""


def _where(x):
    return torch.where if torch.is_tensor(x) else np.where


def srgb_to_linear(x):
    """Decode sRGB values in [0, 1] to linear light (IEC 61966-2-1). Values are clipped to [0, 1] first.

    Example:
        >>> round(float(srgb_to_linear(np.float64(0.5))), 4)
        0.214
    """
    x = x.clip(0.0, 1.0)
    return _where(x)(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """Encode linear light in [0, 1] to sRGB values. Values are clipped to [0, 1] first; the gradient is finite at 0.

    Example:
        >>> round(float(linear_to_srgb(srgb_to_linear(np.float64(0.3)))), 6)
        0.3
    """
    x = x.clip(0.0, 1.0)
    # Clip inside the power branch so its (unused) gradient at 0 is not infinite, which would poison autograd.
    return _where(x)(x <= 0.0031308, x * 12.92, 1.055 * x.clip(0.0031308, 1.0) ** (1 / 2.4) - 0.055)


def blur_frames(frames, dim: int = 0, averaging: Averaging = "linear", weights=None):
    """Average sharp frames into a blurred image.

    Args:
        frames: sRGB frames in [0, 1] stacked along ``dim`` (for example (T, C, H, W) or (B, T, C, H, W)).
        dim: the time dimension.
        averaging: "linear" (in linear light) or "srgb" (the sRGB values, as the paper does).
        weights: optional 1-D weights over time (normalised here); equal weights by default.

    Returns:
        The blurred sRGB image, with ``dim`` removed.

    Example:
        >>> f = np.stack([np.zeros((1, 2, 2)), np.ones((1, 2, 2))])
        >>> float(blur_frames(f, averaging="srgb")[0, 0, 0]), round(float(blur_frames(f)[0, 0, 0]), 3)
        (0.5, 0.735)
    """
    linear = averaging == "linear"
    x = srgb_to_linear(frames) if linear else frames
    n = x.shape[dim]
    if weights is None:
        mean = x.mean(dim) if torch.is_tensor(x) else x.mean(axis=dim)
    else:
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device) if torch.is_tensor(x) else np.asarray(weights, x.dtype)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},) to match the {n} frames, got {tuple(w.shape)}")
        shape = [1] * x.ndim
        shape[dim] = n
        w = (w / w.sum()).reshape(shape)
        mean = (x * w).sum(dim) if torch.is_tensor(x) else (x * w).sum(axis=dim)
    return linear_to_srgb(mean) if linear else mean


def to_uint8(x):
    """8-bit values of an image in [0, 1] (any layout, NumPy or torch): clipped, scaled by 255 and rounded to the
    nearest (halves to even).

    Example:
        >>> to_uint8(np.array([-0.1, 0.5, 0.999, 2.0])).tolist()
        [0, 128, 255, 255]
    """
    if torch.is_tensor(x):
        return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def as_float64(x) -> np.ndarray:
    """A NumPy float64 array of a tensor (any device, detached) or an array-like."""
    return x.detach().cpu().double().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)


def psnr(pred, gt) -> float:
    """PSNR in dB (data range 1) of two images or batches of the same shape (NumPy or torch), over all their values.

    Example:
        >>> psnr(np.zeros(4), np.full(4, 0.1))
        20.0
    """
    mse = float(np.mean((as_float64(pred) - as_float64(gt)) ** 2))
    return float("inf") if mse == 0 else -10 * math.log10(mse)

