"""Outputs at the photo's own resolution from networks that work at a small one.

The model works at its training size (about 160 x 120). A photo's outputs come back at the photo's size (reduced to
``max_pixels`` when larger), each part by the method that was measured to work best (docs/reconstruct.md):

* **Motion** is estimated at the working size. The poses are metric and K is scaled with the image, so they are
  exact at every resolution; only the blur length *in pixels* grows with the resolution.
* **Deblurring: multi-scale residual fusion.** The deblurring network is fully convolutional, but it learnt blur
  lengths and image statistics at the working size; at 1280 x 720 a hand-held photo's blur is several times longer
  than at 160 x 120 and its texture finer. Run alone at full resolution it gains less than at half resolution.
  So it runs at the photo's size and at 1/2 and 1/4 of it (:data:`FUSION_SCALES`, only the scales whose image is
  at least as large as the working size), each in overlapping tiles, and the correction (network output minus its
  input) of each scale, upsampled, is averaged and added to the photo. The full-resolution term keeps the fine
  detail, the coarse ones remove the long blur the full-resolution pass leaves. A photo at the working size is
  deblurred exactly as before (one scale).
* **Depth** is predicted at the working size and brought to full resolution by joint bilateral upsampling (Kopf et
  al., 2007) of log depth, guided by the full-resolution deblurred image: each output pixel averages its nearest
  working-size depths, weighted by distance and by how alike the image's colour is at the output pixel and at each
  of them. A depth edge then follows the image's edge instead of the working size's pixel grid (a step between two
  planes comes back exact, where bilinear upsampling smears it over a working-size pixel), and every value is an
  average of the network's, so nothing outside its range is invented. The guided filter (He et al.; kornia's
  ``guided_blur``) was measured too: it places edges well but spreads the error of a step over its window, and on
  real video neither beats bilinear upsampling by much, because the network's own depth edges are soft
  (docs/reconstruct.md).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import WfbError

DEFAULT_MAX_PIXELS = 4_000_000
"""Largest output, in pixels: photos above it are reduced to it (aspect ratio kept)."""
DEFAULT_MAX_POINTS = 1_000_000
"""Largest point cloud: above it the cloud comes from the outputs reduced to this many pixels."""
DEFAULT_TILE = 1024
"""Longest side of the tiles the deblurring network runs on: its memory is that of one tile, whatever the photo."""
TILE_OVERLAP = 64
"""Pixels two neighbouring tiles share; their outputs are cross-faded over it."""
FUSION_SCALES = (1, 2, 4)
"""Downscaling factors at which the deblurring network runs before its corrections are averaged."""
JBU_RADIUS = 2
"""Joint bilateral upsampling reads the (2 * radius)^2 nearest working-size depths of each output pixel."""
JBU_SIGMA_S = 1.0
"""Its spatial scale, in working-size pixels."""
JBU_SIGMA_R = 0.1
"""Its colour scale, in [0, 1] brightness units: working-size depths whose colour differs by more barely count."""


def output_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The photo's size, or the largest size with its aspect ratio and at most ``max_pixels`` pixels."""
    if max_pixels < 1:
        raise WfbError(f"--max-pixels must be positive, got {max_pixels}")
    if width * height <= max_pixels:
        return width, height
    s = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * s)), max(1, int(height * s))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) for ``size = (W, H)``: anti-aliased bilinear, pixel centres aligned."""
    if tuple(x.shape[-1:-3:-1]) == tuple(size):
        return x
    return F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=True)


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of the fewest equal tiles, each at most ``tile`` long (a multiple of 8 where it can be), that
    cover ``length`` with at least ``overlap`` pixels shared between neighbours."""
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(length, tile, 8 * math.ceil((length + (n - 1) * overlap) / n / 8))
    return [(round(i * (length - size) / (n - 1)), size) for i in range(n)]


def _ramp(length: int, overlap: int, first: bool, last: bool, like: torch.Tensor) -> torch.Tensor:
    """Cross-fade weights along one side of a tile: rising over ``overlap`` pixels except at the image's borders."""
    w = torch.ones(length, dtype=like.dtype, device=like.device)
    ramp = (torch.arange(overlap, dtype=like.dtype, device=like.device) + 0.5) / overlap
    if not first:
        w[:overlap] = ramp
    if not last:
        w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = DEFAULT_TILE,
          overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """``fn`` (a size-preserving image network) over (B, C, H, W) ``x`` in overlapping square tiles.

    Tiles of at most ``tile`` pixels a side overlap by at least ``overlap``; over the ``overlap`` pixels at each inner
    edge a tile's weight ramps linearly, and the weighted outputs are normalised, so no seam shows. ``tile=0`` or an
    image that fits one tile runs ``fn`` once. Away from tile borders (farther than the network's receptive field
    reaches) the result equals the untiled one.
    """
    H, W = x.shape[-2:]
    if tile <= 0 or (H <= tile and W <= tile):
        return fn(x)
    if overlap < 1 or overlap * 2 > tile:
        raise WfbError(f"tile overlap must be between 1 and half the tile ({tile}), got {overlap}")
    out, weight = None, torch.zeros(1, 1, H, W, dtype=x.dtype, device=x.device)
    for y0, h in _spans(H, tile, overlap):
        for x0, w in _spans(W, tile, overlap):
            y = fn(x[..., y0:y0 + h, x0:x0 + w])
            if out is None:
                out = torch.zeros(*y.shape[:2], H, W, dtype=y.dtype, device=y.device)
            wy = _ramp(h, overlap, y0 == 0, y0 + h == H, y)
            wx = _ramp(w, overlap, x0 == 0, x0 + w == W, y)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[..., y0:y0 + h, x0:x0 + w] += y * wt
            weight[..., y0:y0 + h, x0:x0 + w] += wt
    return out / weight


def fusion_scales(size: tuple[int, int], work_pixels: int) -> list[int]:
    """The factors of :data:`FUSION_SCALES` whose reduced image still has at least ``work_pixels`` pixels."""
    W, H = size
    return [s for s in FUSION_SCALES if s == 1 or (W / s) * (H / s) >= work_pixels]


@torch.no_grad()
def deblur_full(deblur: Callable[[torch.Tensor], torch.Tensor], blurred: torch.Tensor, work_pixels: int,
                tile: int = DEFAULT_TILE) -> tuple[torch.Tensor, list[int]]:
    """Deblur (1, 3, H, W) ``blurred`` at its own size by multi-scale residual fusion (see the module docstring).

    Returns the deblurred image and the scales used. With one scale the result is the network's output itself.
    """
    H, W = blurred.shape[-2:]
    scales = fusion_scales((W, H), work_pixels)
    if scales == [1]:
        return tiled(deblur, blurred, tile), scales
    correction = torch.zeros_like(blurred)
    for s in scales:
        x = resize(blurred, (max(8, round(W / s)), max(8, round(H / s)))).clamp(0, 1) if s != 1 else blurred
        c = tiled(deblur, x, tile) - x
        correction += c if s == 1 else F.interpolate(c, size=(H, W), mode="bilinear", align_corners=False)
    return (blurred + correction / len(scales)).clamp(0, 1), scales


@torch.no_grad()
def upsample_depth(depth: torch.Tensor, guide: torch.Tensor, radius: int = JBU_RADIUS, sigma_s: float = JBU_SIGMA_S,
                   sigma_r: float = JBU_SIGMA_R) -> torch.Tensor:
    """(1, 1, h, w) depth -> (1, 1, H, W) at the size of the (1, 3, H, W) ``guide`` image by joint bilateral
    upsampling of log depth (see the module docstring). Same size: returned as it is.

    Each output pixel averages the (2 radius)^2 nearest working-size depths, weighted by their distance (``sigma_s``
    working-size pixels) and by how far the guide's colour at the output pixel is from the guide's colour at each of
    them (``sigma_r``, in [0, 1] brightness units).
    """
    H, W = guide.shape[-2:]
    h, w = depth.shape[-2:]
    if (h, w) == (H, W):
        return depth
    guide = guide.float()
    guide_low = resize(guide, (w, h))
    log_depth = depth.float().log()
    ys = (torch.arange(H, dtype=guide.dtype, device=guide.device) + 0.5) * h / H - 0.5
    xs = (torch.arange(W, dtype=guide.dtype, device=guide.device) + 0.5) * w / W - 0.5
    y0, x0 = ys.floor().long(), xs.floor().long()
    num = torch.zeros(1, 1, H, W, dtype=guide.dtype, device=guide.device)
    den = torch.zeros_like(num)
    for dy in range(1 - radius, radius + 1):
        iy = (y0 + dy).clamp(0, h - 1)[:, None]
        wy = torch.exp(-((ys - (y0 + dy)) ** 2) / (2 * sigma_s**2))[:, None]
        for dx in range(1 - radius, radius + 1):
            ix = (x0 + dx).clamp(0, w - 1)[None, :]
            wx = torch.exp(-((xs - (x0 + dx)) ** 2) / (2 * sigma_s**2))[None, :]
            colour = ((guide - guide_low[..., iy, ix]) ** 2).sum(1, keepdim=True)
            weight = wy * wx * torch.exp(-colour / (2 * sigma_r**2)) + 1e-12
            num += weight * log_depth[..., iy, ix]
            den += weight
    return (num / den).exp().to(depth.dtype)
