"""Deconvolution at the photo's size: the sharp frame whose re-blur, with the refined motion and depth, is the photo.

The deblurring network answers from what it learnt; refinement then fits the trajectory to the photo. With the
trajectory and depth fixed the re-blur is linear in the sharp image (in linear light: a mean of bilinear warps,
:func:`worldfromblur.geometry.exposure_sampler`), so the sharp frame that explains the photo is a linear
least-squares problem,

    S* = argmin_S  | A S - B |^2  +  lambda | S - S_0 |^2,

with ``A`` the exposure, ``B`` the photo and ``S_0`` the network's frame (all in linear light). The second term is
the prior that keeps noise and ringing down: where the blur leaves a frequency unseen, S stays the network's. It is
solved by conjugate gradients on the normal equations ``(A^T A + lambda) S = A^T B + lambda S_0`` (``A^T`` by
autograd), starting from ``S_0``, a few iterations, then (``robust`` > 0, the default) as many again on the same
energy with each pixel's error weighted by Huber's weight (pixels no camera motion explains, something that moved by
itself, weigh less), in overlapping tiles (the photo's blur crosses a tile's border by at most its length; tiles
overlap by :data:`DECONV_OVERLAP` pixels and are cross-faded).

It is only as good as the trajectory: with a wrong motion it sharpens the wrong way. docs/reconstruct.md has what it
does on real blurred/sharp pairs.
"""

from __future__ import annotations

import torch

from ..geometry import exposure_sampler, pose_from_uv
from ..imaging import linear_to_srgb, srgb_to_linear
from .fullres import DEFAULT_TILE, tiled
from .refine import huber_threshold, huber_weights

DEFAULT_WEIGHT = 0.3
"""lambda: how strongly the solution stays near the network's frame (relative to the re-blur error). Measured in
docs/reconstruct.md: 0.1 is 0.07 dB better on rendered rooms and worse on every real set; 1.0 keeps full-size real
video within 0.1 dB of the network's frame but gives away a third of the gain at the model's size."""
DEFAULT_ITERATIONS = 8
"""Conjugate-gradient iterations."""
DECONV_SUBFRAMES = 2
"""Instants per frame interval of the exposure the deconvolution inverts."""
DECONV_OVERLAP = 128
"""Pixels two neighbouring tiles share."""
CG_TOLERANCE = 1e-6
"""Conjugate gradients stop early once the normal equations' residual is this fraction of the first one."""
ROBUST = 2.0
"""The second pass's Huber threshold, in robust standard deviations (1.4826 x the median absolute value) of the first
pass's per-pixel re-blur residual; 0: one least-squares pass."""


def _conjugate_gradients(normal, x: torch.Tensor, r: torch.Tensor, iterations: int) -> torch.Tensor:
    """Conjugate gradients for ``normal(x) = rhs`` from ``x``, whose residual ``rhs - normal(x)`` is ``r``."""
    p, rr = r.clone(), float((r * r).sum())
    stop = rr * CG_TOLERANCE**2
    for _ in range(iterations):
        if not rr > stop:  # converged (a nearly sharp photo gets there in a few iterations), or nothing to do
            break
        q = normal(p)
        pq = float((p * q).sum())
        if not pq > 0:  # p . q > 0 for the positive-definite normal operator: only underflow breaks it
            break
        alpha = rr / pq
        x = x + alpha * p
        r = r - alpha * q
        rr_new = float((r * r).sum())
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def _solve(blurred: torch.Tensor, init: torch.Tensor, depth: torch.Tensor, poses: torch.Tensor, K: torch.Tensor,
           weight: float, iterations: int, subframes: int, robust: float = 0.0,
           start: torch.Tensor | None = None) -> torch.Tensor:
    """The deconvolution of one (1, 3, H, W) image in linear light (no tiling): conjugate gradients from ``start``
    (default ``init``, the prior); with ``robust`` > 0, a second, weighted pass (see :func:`deconvolve`)."""
    A = exposure_sampler(depth, poses, K, subframes)

    def adjoint(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A^T y, the gradient of <A x, y> (A is linear, so x only fixes the shapes)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            return torch.autograd.grad(A(x), x, grad_outputs=y)[0]

    def normal(x: torch.Tensor, w: torch.Tensor | float = 1.0) -> torch.Tensor:
        with torch.no_grad():
            ax = A(x)
        return adjoint(x, w * ax) + weight * x

    x = (init if start is None else start).clone()
    with torch.no_grad():
        r = adjoint(x, blurred - A(x)) + weight * (init - x)  # the normal equations' residual at x
    x = _conjugate_gradients(normal, x, r, iterations)
    if robust > 0:
        with torch.no_grad():
            res = blurred - A(x)
            e = res.abs().mean(1, keepdim=True)  # per pixel, over the colours
            w = huber_weights(e, huber_threshold(e, robust, 1e-5))
            r = adjoint(x, w * res) + weight * (init - x)
        x = _conjugate_gradients(lambda z: normal(z, w), x, r, iterations)
    return x


@torch.no_grad()
def deconvolve(blurred: torch.Tensor, init: torch.Tensor, depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               K: torch.Tensor, weight: float = DEFAULT_WEIGHT, iterations: int = DEFAULT_ITERATIONS,
               subframes: int = DECONV_SUBFRAMES, tile: int = DEFAULT_TILE, robust: float = ROBUST,
               prior: torch.Tensor | None = None) -> torch.Tensor:
    """The sharp frame (1, 3, H, W), sRGB in [0, 1], that re-blurs into ``blurred`` with the trajectory (u, v).

    Args:
        blurred: (1, 3, H, W) the photo, sRGB in [0, 1].
        init: (1, 3, H, W) the network's deblurred frame at the same size: the start, and the prior unless
            ``prior`` is given.
        depth: (1, 1, H, W) its depth, metres.
        u, v: (1, 2n, 3) the (refined) trajectory.
        K: (1, 3, 3) intrinsics at this size.
        weight: lambda of the module docstring.
        iterations: conjugate-gradient iterations (0 returns ``init``).
        tile: longest tile side (0: one pass).
        robust: after the least-squares solve, a second pass of ``iterations`` on the same energy with each pixel's
            re-blur error weighted by Huber's weight at ``robust`` robust standard deviations of the first pass's
            residuals: pixels no camera motion explains (something that moved by itself) weigh less. 0: no second
            pass (half the time).
        prior: (1, 3, H, W) the frame ``S_0`` the solution is kept near, when it is not ``init`` (e.g. a previous
            deconvolution started from, with the network's frame as the prior).
    """
    if iterations <= 0:
        return init
    H, W = blurred.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=blurred.dtype), torch.arange(W, dtype=blurred.dtype), indexing="ij")
    stack = torch.cat([srgb_to_linear(blurred), srgb_to_linear(init), depth, xs[None, None].to(blurred.device),
                       ys[None, None].to(blurred.device)] + ([] if prior is None else [srgb_to_linear(prior)]), dim=1)
    poses = pose_from_uv(u, v)

    def one_tile(t: torch.Tensor) -> torch.Tensor:
        x0, y0 = float(t[0, 7, 0, 0]), float(t[0, 8, 0, 0])
        K_t = K.clone()
        K_t[:, 0, 2] -= x0
        K_t[:, 1, 2] -= y0
        kept_near = t[:, 3:6] if prior is None else t[:, 9:12]  # the prior: init's channels, or the prior's
        return _solve(t[:, :3], kept_near, t[:, 6:7], poses, K_t, weight, iterations, subframes, robust,
                      start=t[:, 3:6])

    tile = tile if tile <= 0 or tile > 2 * DECONV_OVERLAP else 2 * DECONV_OVERLAP + 8
    out = tiled(one_tile, stack, tile, DECONV_OVERLAP)
    return linear_to_srgb(out.clamp(0, 1))


__all__ = ["deconvolve", "DEFAULT_WEIGHT", "DEFAULT_ITERATIONS", "ROBUST"]
