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

from ..imaging import psnr
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


def reblur_uv(sharp, depth, u, v, K, linear_light: bool = True, subframes: int = REFINE_SUBFRAMES) -> torch.Tensor:
    """The blurred image of a sharp frame, depth and trajectory (u, v), with the exposure model of this module."""
    return reblur(sharp, depth, pose_from_uv(u, v), K, subframes=subframes, linear_light=linear_light, validate=False)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="area")


def _energy(blurred, sharp, depth, K, u, v, linear_light: bool, anchor=None, weight: float = 0.0) -> torch.Tensor:
    """E of the module docstring: the re-blur error, plus the sharp frame's distance to ``anchor`` when given."""
    err = (reblur_uv(sharp, depth, u, v, K, linear_light) - blurred).pow(2).mean()
    return err + weight * (sharp - anchor).pow(2).mean() if anchor is not None else err


class _Fit:
    """Refinement's state: the optimised parameters, their optimiser, and the best full-resolution fit seen.

    The parameters are ``pu``, ``pv`` (the smooth model's coefficients, or the per-instant vectors themselves) and a
    residual added to the sharp frame (optimised only with ``optimize_sharp``).
    """

    def __init__(self, u0, v0, sharp, motion: str, translation: bool, optimize_sharp: bool, lrs: tuple):
        self.n, self.smooth, self.translation, self.v0 = u0.shape[1] // 2, motion == "smooth", translation, v0
        self.pu = (fit_smooth(u0) if self.smooth else u0.clone()).requires_grad_(True)
        self.pv = (fit_smooth(v0) if self.smooth else v0.clone()).requires_grad_(translation)
        self.residual = torch.zeros_like(sharp, requires_grad=True)
        lr_rot, lr_trans, lr_sharp = lrs
        groups = [{"params": [self.pu], "lr": lr_rot}]
        if translation:
            groups.append({"params": [self.pv], "lr": lr_trans})
        if optimize_sharp:
            groups.append({"params": [self.residual], "lr": lr_sharp})
        self.opt = torch.optim.Adam(groups)
        self.peak = [g["lr"] for g in self.opt.param_groups]
        self.best_loss, self.best, self.history = math.inf, None, []

    def trajectory(self, detach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        pu, pv = (self.pu.detach(), self.pv.detach()) if detach else (self.pu, self.pv)
        to_uv = (lambda p: eval_smooth(p, self.n)) if self.smooth else (lambda p: p)
        return to_uv(pu), (to_uv(pv) if self.translation else self.v0)

    def sharp(self, base: torch.Tensor, coarse: bool = False) -> torch.Tensor:
        return (base + (_half(self.residual) if coarse else self.residual)).clamp(0, 1)

    def consider(self, loss_value: float, sharp: torch.Tensor) -> None:
        """Keep the current parameters if their full-resolution energy is the lowest seen."""
        self.history.append(loss_value)
        if math.isfinite(loss_value) and loss_value < self.best_loss:
            self.best_loss = loss_value
            uu, vv = self.trajectory(detach=True)
            self.best = (uu.clone(), vv.clone(), self.sharp(sharp).detach().clone())

    def step(self, loss: torch.Tensor, t: float) -> None:
        """One Adam step at the cosine-decayed step size of progress ``t`` in [0, 1]."""
        for g, lr in zip(self.opt.param_groups, self.peak):
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def refine(
    blurred: torch.Tensor, sharp: torch.Tensor, depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor, K: torch.Tensor,
    steps: int, linear_light: bool = True, optimize_sharp: bool = False, motion: str = "smooth",
    translation: bool = False, lr_rot: float = 2e-3, lr_trans: float = 2e-3, lr_sharp: float = 1e-2,
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
    with torch.no_grad():
        start = reblur_uv(sharp, depth, u0, v0, K, linear_light)
    before = psnr(start, blurred)
    if steps <= 0:
        return RefineResult(u0, v0, sharp, before, before, start, 0, [])

    fit = _Fit(u0, v0, sharp, motion, translation, optimize_sharp, (lr_rot, lr_trans, lr_sharp))
    # The starting point is a candidate too, so refinement never returns a worse fit. Its energy is the error of
    # `start` (the sharp-frame term is zero there).
    fit.best_loss, fit.best = float((start - blurred).pow(2).mean()), (u0.clone(), v0.clone(), sharp.clone())
    fit.history.append(fit.best_loss)
    levels = {True: (_half(blurred), _half(sharp), _half(depth), scale_intrinsics(K, 0.5, 0.5)),
              False: (blurred, sharp, depth, K)}
    for step in range(steps):
        coarse = step < steps // 2  # the first half at half resolution
        b_t, s_t, d_t, K_t = levels[coarse]
        loss = _energy(b_t, fit.sharp(s_t, coarse), d_t, K_t, *fit.trajectory(), linear_light,
                       s_t if optimize_sharp else None, sharp_weight)
        if not coarse:
            fit.consider(float(loss.detach()), sharp)  # the energy of the parameters before this step's update
        fit.step(loss, step / max(steps - 1, 1))
    with torch.no_grad():  # the parameters after the last update
        fit.consider(float(_energy(blurred, fit.sharp(sharp), depth, K, *fit.trajectory(), linear_light,
                                   sharp if optimize_sharp else None, sharp_weight)), sharp)
    u_best, v_best, s_best = fit.best
    with torch.no_grad():
        final = reblur_uv(s_best, depth, u_best, v_best, K, linear_light)
    return RefineResult(u_best, v_best, s_best, before, psnr(final, blurred), final, steps, fit.history)
