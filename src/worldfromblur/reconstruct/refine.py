"""Test-time refinement: fit the trajectory (and optionally the sharp frame) to this very photo.

The networks predict a trajectory from what they learnt on training data; nothing makes their answer re-create
*this* photo. Refinement starts from their output and minimises the re-blur error against the input,

    E(u, v, S) = mean_pixels | reblur(S, D, T(u, v), K) - B |^2  +  lambda_S |S - S_0|^2,

with Adam, using a finer exposure model than the networks' training (``subframes`` instants per frame interval, in
linear light). It runs coarse to fine: the first half of the steps on images at half resolution, where the error
surface is smoother, the rest at full resolution. The lowest error seen is kept, so refinement never returns a worse
fit than it started from.

What it optimises, by default:

- **Rotation only.** The translation stays the networks'. Over an exposure of a fifth of a second the
  translation moves pixels by a fraction of what rotation does, its image motion depends on a depth map that is
  itself an estimate, and a small rotation about x (y) is nearly indistinguishable from a translation along y (x).
  Freed, it trades off against the rotation and both errors grow (measured in docs/reconstruct.md);
  ``translation=True`` frees it (under the same motion model) for users with a trusted depth map.
- **A smooth motion** (``motion="smooth"``): each rotation coordinate follows ``u(t) = a t + b t^2`` over the frame
  instants ``t = -n..-1, 1..n`` (``u(0) = 0``, the reference), a constant angular velocity with a constant change
  of it, which is what a hand-held camera does in a fifth of a second. The 2n rotation vectors are first
  projected on that model by least squares. It leaves 6 rotation unknowns instead of 6n and keeps the fit from
  bending single poses to explain texture; ``motion="free"`` optimises every pose on its own.

What it never optimises: the depth scale. Scaling depth and every translation by the same factor gives exactly
the same warps (``K (R sD K^-1 p + s t) ~ K (R D K^-1 p + t)``), so the blur carries no information about it; the
metric scale comes from the depth network alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..evaluation.metrics import psnr
from ..geometry import pose_from_uv, reblur, scale_intrinsics

REFINE_SUBFRAMES = 4
"""Instants per frame interval of the exposure model used by refinement and by the reported re-blur PSNR."""

MOTION_MODELS = ("smooth", "free")


def smooth_basis(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(2n, 2) the smooth motion model's basis: columns ``t`` and ``t^2`` at the instants -n..-1, 1..n."""
    t = torch.cat([torch.arange(-n, 0), torch.arange(1, n + 1)]).to(dtype=dtype, device=device)
    return torch.stack([t, t * t], dim=1)


def fit_smooth(x: torch.Tensor) -> torch.Tensor:
    """Least-squares coefficients (B, 2, 3) of the smooth model for (B, 2n, 3) per-instant vectors."""
    V = smooth_basis(x.shape[1] // 2, x.dtype, x.device)
    return torch.linalg.pinv(V) @ x


def eval_smooth(coef: torch.Tensor, n: int) -> torch.Tensor:
    """(B, 2n, 3) per-instant vectors of (B, 2, 3) smooth-model coefficients."""
    return smooth_basis(n, coef.dtype, coef.device) @ coef


@dataclass
class RefineResult:
    u: torch.Tensor  # (1, 2n, 3)
    v: torch.Tensor  # (1, 2n, 3)
    sharp: torch.Tensor  # (1, 3, H, W)
    psnr_before: float
    psnr_after: float
    reblurred: torch.Tensor  # (1, 3, H, W) the returned trajectory's re-blur, whose PSNR is psnr_after
    steps: int
    history: list[float]  # energy at the start, at each full-resolution step, and after the last


def render(sharp, depth, u, v, K, linear_light: bool = True, subframes: int = REFINE_SUBFRAMES) -> torch.Tensor:
    """The blurred image of a sharp frame, depth and trajectory (u, v), with the exposure model of this module."""
    return reblur(sharp, depth, pose_from_uv(u, v), K, subframes=subframes, linear_light=linear_light, validate=False)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="area")


def refine(
    blurred: torch.Tensor,
    sharp: torch.Tensor,
    depth: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    K: torch.Tensor,
    steps: int,
    linear_light: bool = True,
    optimize_sharp: bool = False,
    motion: str = "smooth",
    translation: bool = False,
    lr_rot: float = 2e-3,
    lr_trans: float = 2e-3,
    lr_sharp: float = 1e-2,
    sharp_weight: float = 0.1,
) -> RefineResult:
    """Refine (u, v) (and the sharp frame when ``optimize_sharp``) of one image; see the module docstring.

    Args:
        blurred: (1, 3, H, W) the input photo at the model's resolution, sRGB in [0, 1].
        sharp, depth: (1, 3, H, W) and (1, 1, H, W) the networks' deblurred frame and depth (depth stays fixed).
        u, v: (1, 2n, 3) the networks' trajectory.
        K: (1, 3, 3) intrinsics at this resolution.
        steps: Adam steps (0 = just measure).
        motion: ``"smooth"`` (rotation follows ``a t + b t^2``) or ``"free"`` (every pose on its own).
        translation: also refine the translations (by default they stay the networks').
        lr_rot, lr_trans, lr_sharp: Adam step sizes in radians, metres and intensity, decayed by a cosine.
        sharp_weight: lambda_S, how strongly the sharp frame stays near the network's.
    """
    if motion not in MOTION_MODELS:
        raise ValueError(f"motion must be one of {', '.join(MOTION_MODELS)}, got {motion!r}")
    blurred, sharp, depth, K = blurred.detach().float(), sharp.detach().float(), depth.detach().float(), K.float()
    u0, v0 = u.detach().float().clone(), v.detach().float().clone()
    n = u0.shape[1] // 2
    # The optimised parameters pu, pv and the per-instant vectors they stand for.
    if motion == "smooth":
        to_uv = lambda p: eval_smooth(p, n)  # noqa: E731
        pu, pv = fit_smooth(u0), fit_smooth(v0)
    else:
        to_uv = lambda p: p  # noqa: E731
        pu, pv = u0.clone(), v0.clone()

    def trajectory(pu_t, pv_t):
        return to_uv(pu_t), (to_uv(pv_t) if translation else v0)

    def energy(blur_t, sharp_t, depth_t, K_t, uu, vv, s0=None):
        err = (render(sharp_t, depth_t, uu, vv, K_t, linear_light) - blur_t).pow(2).mean()
        if s0 is not None:
            err = err + sharp_weight * (sharp_t - s0).pow(2).mean()
        return err

    with torch.no_grad():
        start = render(sharp, depth, u0, v0, K, linear_light)
    before = psnr(start, blurred)
    if steps <= 0:
        return RefineResult(u0, v0, sharp, before, before, start, 0, [])

    pu, pv = pu.requires_grad_(True), pv.requires_grad_(translation)
    residual = torch.zeros_like(sharp, requires_grad=True)
    groups = [{"params": [pu], "lr": lr_rot}]
    if translation:
        groups.append({"params": [pv], "lr": lr_trans})
    if optimize_sharp:
        groups.append({"params": [residual], "lr": lr_sharp})
    opt = torch.optim.Adam(groups)
    peak = [g["lr"] for g in opt.param_groups]
    coarse_steps = steps // 2
    levels = {
        True: (_half(blurred), _half(sharp), _half(depth), scale_intrinsics(K, 0.5, 0.5)),
        False: (blurred, sharp, depth, K),
    }
    # The starting point is a candidate too, so refinement never returns a worse fit. Its energy is the error of
    # `start` (the sharp-frame term is zero there).
    best_loss = float((start - blurred).pow(2).mean())
    best = (u0.clone(), v0.clone(), sharp.clone())
    history = [best_loss]

    def consider(loss_value: float) -> None:
        """Keep the current parameters if their full-resolution energy is the lowest seen."""
        nonlocal best_loss, best
        history.append(loss_value)
        if math.isfinite(loss_value) and loss_value < best_loss:
            best_loss = loss_value
            uu, vv = trajectory(pu.detach(), pv.detach())
            best = (uu.clone(), vv.clone(), (sharp + residual).clamp(0, 1).detach().clone())

    for step in range(steps):
        coarse = step < coarse_steps
        b_t, s_t, d_t, K_t = levels[coarse]
        t = step / max(steps - 1, 1)
        for g, lr in zip(opt.param_groups, peak):
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        res_t = _half(residual) if coarse else residual
        loss = energy(b_t, (s_t + res_t).clamp(0, 1), d_t, K_t, *trajectory(pu, pv), s_t if optimize_sharp else None)
        if not coarse:
            consider(float(loss.detach()))  # the energy of the parameters before this step's update
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():  # the parameters after the last update
        consider(float(energy(blurred, (sharp + residual).clamp(0, 1), depth, K, *trajectory(pu, pv),
                              sharp if optimize_sharp else None)))
    u_best, v_best, s_best = best
    with torch.no_grad():
        final = render(s_best, depth, u_best, v_best, K, linear_light)
    return RefineResult(u_best, v_best, s_best, before, psnr(final, blurred), final, steps, history)
