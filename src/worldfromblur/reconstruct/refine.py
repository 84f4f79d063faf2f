"""Test-time refinement: fit the trajectory (and optionally the sharp frame) to this very photo.

The networks predict a trajectory from what they learnt on training data; nothing makes their answer re-create
*this* photo. Refinement starts from their output and minimises the re-blur error against the input,

    E(u, v, S) = mean_pixels | reblur(S, D, T(u, v), K) - B |^2  +  lambda_S |S - S_0|^2,

using a finer exposure model than the networks' training (up to ``subframes`` instants per frame interval, in linear
light); the motion fit can replace the square by a Huber cost (below). Whatever happens, it never returns a worse
fit than the networks': the answer is measured with the reporting exposure model (:data:`REFINE_SUBFRAMES`
instants per interval, at the working size) and, if it is not finite or fits the photo worse than the networks'
trajectory, the networks' trajectory is returned with the reason in ``RefineResult.fallback``.

**The motion** (the default, ``optimize_sharp=False``) is fitted by Levenberg-Marquardt, coarse to fine. The unknowns
are few (6 for a smooth rotation), so the Jacobian of the re-blur residual is taken by forward differences, all
unknowns in one batched re-blur, and each Gauss-Newton step lands where dozens of gradient steps would. Three levels:
the images at a quarter, half and the full working size (the blur is smoother, and the basin of the right answer
wider, at the coarse levels); at each level the exposure is sampled just finely enough that consecutive instants
move the image by at most :data:`SUBFRAME_STEP_PX` pixels, up to ``subframes`` per interval (short blur needs few
instants); a level stops when an accepted step lowers the error by less than a relative ``1e-4`` or no damping makes
it lower. ``steps`` caps the Gauss-Newton iterations over all levels (half of them at the coarsest level, about a third
of the rest at the finest). On 2 CPU cores, 15 iterations at 160 x 120 take about 0.4 s
(docs/benchmarks.md).

**The sharp frame** (``optimize_sharp=True``) has one unknown per pixel; then the trajectory and a residual added
to the sharp frame are optimised together with Adam (``steps`` Adam steps, the first half at half resolution).

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

- **A prior on roll** (``roll_prior``, default :data:`ROLL_PRIOR`): the cost gains ``mu theta_roll^2``, weighted
  so that a roll of :data:`ROLL_PRIOR_DEG` at the exposure's ends, or :data:`ROLL_PRIOR_SHARE` of the yaw and pitch
  there where that is more, costs ``roll_prior`` times the level's starting misfit. Roll moves the image least, and
  a deblurred frame that is still wrong is otherwise fitted with roll the camera did not make (measured per axis in
  docs/reconstruct.md).

- **Optionally, a robust fit** (``robust=K``; least squares by default): the motion fit minimises a Huber cost of
  the re-blur residuals, quadratic up to K robust standard deviations of the residuals (1.4826 times their median
  absolute value, measured at the start of each level) and linear beyond, by iteratively reweighted least squares
  inside Levenberg-Marquardt. A photo's blur is the camera's only where the scene stood still; something that moved
  by itself leaves residuals no camera rotation explains, and least squares bends the rotation towards them. The
  Huber cost gives those pixels less say (tested on a synthetic mover); on real photos it did not lower the axis
  error where the camera's motion dominates (docs/reconstruct.md), so it is not the default.

What it never optimises: the depth scale. Scaling depth and every translation by the same factor gives exactly
the same warps (``K (R sD K^-1 p + s t) ~ K (R D K^-1 p + t)``), so the blur carries no information about it; the
metric scale comes from the depth network alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..imaging import Averaging, psnr
from ..geometry import pose_from_uv, reblur, scale_intrinsics

REFINE_SUBFRAMES = 4
"""Instants per frame interval of the exposure model of the reported re-blur PSNR, and the most refinement uses."""
DEFAULT_STEPS = 15
"""Gauss-Newton iterations of the default refinement (``wfb reconstruct --refine``), over all levels."""
SUBFRAME_STEP_PX = 1.0
"""While fitting the motion, the exposure is sampled so that consecutive instants move the image by at most this."""
LEVELS = (4, 2, 1)
"""The motion fit's levels: the images reduced by these factors, coarse to fine."""
MIN_LEVEL_SIDE = 24
"""A coarse level is used only if its image keeps at least this many pixels a side."""

MOTION_MODELS = ("smooth", "free")
ROLL_PRIOR = 0.06
"""The motion fit's roll prior by default: a roll of :data:`ROLL_PRIOR_DEG` at the exposure's ends (more for a
larger yaw and pitch, :data:`ROLL_PRIOR_SHARE`) costs this many times a level's starting misfit (0: none). Roll moves
the image least, and a deblurred frame that is still wrong is fitted with roll the camera did not make
(docs/reconstruct.md measures it per axis and chooses this weight)."""
ROLL_PRIOR_DEG = 1.0
"""The roll, in degrees at the exposure's ends, whose prior cost is ``roll_prior`` times a level's starting misfit,
for motions whose yaw and pitch stay under twice this."""
ROLL_PRIOR_SHARE = 0.5
"""For a larger motion the prior's roll grows with it: this share of the yaw and pitch rotation at the exposure's
ends (the largest over the instants, at the level's start). A hand-held camera that turns fast rolls more too, and a
fixed prior would hold long exposures' roll back most."""
ROBUST = 0.0
"""The motion fit's Huber threshold by default, in robust standard deviations of the re-blur residuals: 0, least
squares (a Huber fit, e.g. 3, is an option: measured in docs/reconstruct.md, it did not help on real blur)."""


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
    steps: int  # Gauss-Newton iterations (motion) or Adam steps (with the sharp frame) actually run
    history: list[float]  # the energy (roll prior included) at the start and after each accepted step, per level
    fallback: str | None = None  # why the starting trajectory was kept, when refinement could not improve on it
    moved_deg: float = 0.0  # the largest angle between the starting and the returned rotation, over the instants


def reblur_uv(sharp, depth, u, v, K, averaging: Averaging = "linear", subframes: int = REFINE_SUBFRAMES,
              pixels: torch.Tensor | None = None, on_frame=None) -> torch.Tensor:
    """The blurred image of a sharp frame, depth and trajectory (u, v), with the exposure model of this module (at
    the given ``pixels`` only; ``on_frame`` receives the frame instants' images: see
    :func:`~worldfromblur.geometry.reblur`)."""
    return reblur(sharp, depth, pose_from_uv(u, v), K, subframes=subframes, averaging=averaging, validate=False,
                  pixels=pixels, on_frame=on_frame)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="area")


def _energy(blurred, sharp, depth, K, u, v, averaging: bool, anchor: torch.Tensor, weight: float) -> torch.Tensor:
    """E of the module docstring: the re-blur error plus the sharp frame's distance to ``anchor``."""
    err = (reblur_uv(sharp, depth, u, v, K, averaging) - blurred).pow(2).mean()
    return err + weight * (sharp - anchor).pow(2).mean()


class _Fit:
    """The joint (trajectory and sharp frame) refinement's state: the optimised parameters, their optimiser, and the
    best full-resolution fit seen.

    The parameters are ``pu``, ``pv`` (the smooth model's coefficients, or the per-instant vectors themselves) and a
    residual added to the sharp frame.
    """

    def __init__(self, u0, v0, sharp, motion: str, translation: bool, lrs: tuple):
        self.n, self.smooth, self.translation, self.v0 = u0.shape[1] // 2, motion == "smooth", translation, v0
        self.pu = (fit_smooth(u0) if self.smooth else u0.clone()).requires_grad_(True)
        self.pv = (fit_smooth(v0) if self.smooth else v0.clone()).requires_grad_(translation)
        self.residual = torch.zeros_like(sharp, requires_grad=True)
        lr_rot, lr_trans, lr_sharp = lrs
        groups = [{"params": [self.pu], "lr": lr_rot}]
        if translation:
            groups.append({"params": [self.pv], "lr": lr_trans})
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
    steps: int, averaging: Averaging = "linear", optimize_sharp: bool = False, motion: str = "smooth",
    translation: bool = False, lr_rot: float = 2e-3, lr_trans: float = 2e-3, lr_sharp: float = 1e-2,
    sharp_weight: float = 0.1, subframes: int = REFINE_SUBFRAMES, robust: float | None = None,
    roll_prior: float | None = None,
) -> RefineResult:
    """Refine (u, v) (and the sharp frame when ``optimize_sharp``) of one image; see the module docstring.

    Args:
        blurred: (1, 3, H, W) the input photo at the model's resolution, sRGB in [0, 1].
        sharp, depth: (1, 3, H, W) and (1, 1, H, W) the networks' deblurred frame and depth (depth stays fixed).
        u, v: (1, 2n, 3) the networks' trajectory.
        K: (1, 3, 3) intrinsics at this resolution.
        steps: Gauss-Newton iterations over all levels (motion only), or Adam steps (``optimize_sharp``);
            0 = just measure.
        motion: ``"smooth"`` (rotation follows ``a t + b t^2``) or ``"free"`` (every pose on its own).
        translation: also refine the translations (by default they stay the networks').
        lr_rot, lr_trans, lr_sharp: Adam step sizes in radians, metres and intensity, decayed by a cosine
            (``optimize_sharp`` only).
        sharp_weight: lambda_S, how strongly the sharp frame stays near the network's (``optimize_sharp`` only).
        subframes: the most instants per frame interval the motion fit samples (at most :data:`REFINE_SUBFRAMES`).
        robust: the motion fit's Huber threshold in robust standard deviations of the residuals (default
            :data:`ROBUST`; 0 = least squares); ignored with ``optimize_sharp``.
        roll_prior: the motion fit's roll-prior weight (default :data:`ROLL_PRIOR`; 0 = none; see the module
            docstring); ignored with ``optimize_sharp``.
    """
    if motion not in MOTION_MODELS:
        raise ValueError(f"motion must be one of {', '.join(MOTION_MODELS)}, got {motion!r}")
    if not 1 <= subframes <= REFINE_SUBFRAMES:
        raise ValueError(f"subframes must be 1 to {REFINE_SUBFRAMES}, got {subframes}")
    robust = ROBUST if robust is None else float(robust)
    roll_prior = ROLL_PRIOR if roll_prior is None else float(roll_prior)
    if not robust >= 0:
        raise ValueError(f"robust (the Huber threshold) must be 0 (least squares) or more, got {robust}")
    if not roll_prior >= 0:
        raise ValueError(f"roll_prior must be 0 (none) or more, got {roll_prior}")
    blurred, sharp, depth, K = blurred.detach().float(), sharp.detach().float(), depth.detach().float(), K.float()
    u0, v0 = u.detach().float().clone(), v.detach().float().clone()
    with torch.no_grad():
        start = reblur_uv(sharp, depth, u0, v0, K, averaging)
    before = psnr(start, blurred)
    if steps <= 0:
        return RefineResult(u0, v0, sharp, before, before, start, 0, [])
    if optimize_sharp:
        (u1, v1, s1), history, done = _refine_adam(blurred, sharp, depth, u0, v0, K, steps, averaging, motion,
                                                  translation, (lr_rot, lr_trans, lr_sharp), sharp_weight, start)
    else:
        (u1, v1), history, done = _refine_motion(blurred, sharp, depth, u0, v0, K, steps, averaging, motion,
                                                 translation, subframes, robust, roll_prior)
        s1 = sharp
    with torch.no_grad():
        final = reblur_uv(s1, depth, u1, v1, K, averaging)
    after = psnr(final, blurred)
    fallback = None
    if not (torch.isfinite(u1).all() and torch.isfinite(v1).all() and torch.isfinite(final).all()):
        fallback = "the refined trajectory is not finite"
    elif not after >= before:
        fallback = f"the refined trajectory fits the photo worse ({after:.2f} dB against {before:.2f} dB)"
    if fallback is not None:
        return RefineResult(u0, v0, sharp, before, before, start, done, history, fallback)
    return RefineResult(u1, v1, s1, before, after, final, done, history, None, rotation_change_deg(u0, v0, u1, v1))


def rotation_change_deg(u0: torch.Tensor, v0: torch.Tensor, u1: torch.Tensor, v1: torch.Tensor) -> float:
    """The largest angle (degrees) between the rotations of two (1, 2n, 3) trajectories, over the instants."""
    R0, R1 = pose_from_uv(u0, v0)[..., :3, :3], pose_from_uv(u1, v1)[..., :3, :3]
    cos = (((R0.transpose(-1, -2) @ R1).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return math.degrees(float(torch.arccos(cos).max()))


class _MotionParams:
    """The motion fit's unknowns as one scaled vector ``theta`` and its map to trajectories (u, v).

    Smooth model: the coefficients (a, b) of each coordinate; free: every instant's vector. Rotation unknowns are
    scaled so that a unit change moves some instant's rotation by one radian, translation unknowns so that it moves
    the image as much as a radian would at the median depth; one finite-difference step and one damping then suit
    them all.
    """

    def __init__(self, u0: torch.Tensor, v0: torch.Tensor, depth: torch.Tensor, motion: str, translation: bool):
        self.n, self.v0, self.translation = u0.shape[1] // 2, v0, translation
        if motion == "smooth":
            self.basis = smooth_basis(self.n, u0.dtype, u0.device)  # (2n, 2)
            self.scale = self.basis.abs().amax(0)[:, None]  # (2, 1): the largest |t| and |t^2|
            to_theta = lambda x: (fit_smooth(x)[0] * self.scale).flatten()  # noqa: E731
        else:
            self.basis, self.scale = None, torch.ones(1, 1, dtype=u0.dtype, device=u0.device)
            to_theta = lambda x: x[0].flatten()  # noqa: E731
        self.metres = float(depth.median())  # translation unit: the median depth
        parts = [to_theta(u0)] + ([to_theta(v0) / self.metres] if translation else [])
        self.theta = torch.cat(parts)
        self.size = self.theta.numel() // (2 if translation else 1)

    def trajectories(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) parameter vectors -> (B, 2n, 3) u and v."""
        B = theta.shape[0]

        def coords(x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(B, -1, 3) / self.scale
            return self.basis @ x if self.basis is not None else x

        u = coords(theta[:, :self.size])
        v = coords(theta[:, self.size:]) * self.metres if self.translation else self.v0.expand(B, -1, -1)
        return u, v


def _levels(blurred, sharp, depth, K) -> list[tuple]:
    """(blurred, sharp, depth, K) at each of :data:`LEVELS` whose image keeps :data:`MIN_LEVEL_SIDE` pixels a side."""
    out, b, s, d = [], blurred, sharp, depth
    for f in (1, 2, 4):
        if f in LEVELS and min(b.shape[-2:]) >= MIN_LEVEL_SIDE:
            out.append((b, s, d, scale_intrinsics(K, 1 / f, 1 / f)))
        b, s, d = _half(b), _half(s), _half(d)
    return out[::-1]


def _subframes_needed(u: torch.Tensor, v: torch.Tensor, K: torch.Tensor, metres: float, most: int) -> int:
    """Instants per frame interval so that consecutive instants move the image by at most SUBFRAME_STEP_PX pixels
    (rotation at the focal length, translation at the median depth)."""
    n = u.shape[1] // 2

    def moves(x: torch.Tensor) -> torch.Tensor:
        """How far each coordinate moves between consecutive instants, the reference (zero) inserted."""
        return torch.cat([x[:, :n], torch.zeros_like(x[:, :1]), x[:, n:]], dim=1).diff(dim=1).norm(dim=-1)

    f = float(K[0, :2, :2].diagonal().abs().max())
    step = f * (moves(u) + moves(v) / metres).max()
    return int(min(most, max(1, math.ceil(float(step) / SUBFRAME_STEP_PX))))


def _iterations_per_level(steps: int, levels: int) -> list[int]:
    """``steps`` split coarse to fine: of what is left, half at the first of three levels, 70 % at the next, all
    at the last."""
    out, left = [], steps
    for share in (0.5, 0.7, 1.0)[-levels:]:
        out.append(math.ceil(left * share))
        left -= out[-1]
    return out


def huber_threshold(size: torch.Tensor, k: float, floor: float) -> float:
    """``k`` robust standard deviations (1.4826 x the median, at least ``floor``) of residual sizes ``size`` >= 0."""
    return k * 1.4826 * float(size.median().clamp_min(floor))


def huber_weights(size: torch.Tensor, c: float) -> torch.Tensor:
    """Huber's IRLS weights of residual sizes ``size`` >= 0 at threshold ``c``: 1 up to ``c``, then ``c / size``."""
    return (c / size.clamp_min(1e-12)).clamp(max=1.0)


def _huber(r: torch.Tensor, c: float) -> tuple[float, torch.Tensor]:
    """Twice the Huber cost of residuals ``r`` at threshold ``c`` (``inf`` = least squares), and the IRLS weights."""
    a = r.abs()
    if not math.isfinite(c):
        return float(r @ r), torch.ones_like(r)
    cost = torch.where(a <= c, a * a, 2 * c * a - c * c).sum()
    return float(cost), huber_weights(a, c)


def _refine_motion(blurred, sharp, depth, u0, v0, K, steps, averaging, motion, translation, most_subframes,
                   robust=0.0, roll_prior=0.0):
    """Levenberg-Marquardt on the motion, coarse to fine (module docstring): the trajectory, energies, iterations."""
    params = _MotionParams(u0, v0, depth, motion, translation)
    theta, eps = params.theta, 1e-3
    is_roll = torch.zeros_like(theta, dtype=torch.bool)
    is_roll[2:params.size:3] = True  # the rotation unknowns are (..., x, y, z) triples; z is roll
    probe = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device) * eps
    history, done = [], 0
    levels = _levels(blurred, sharp, depth, K)
    for (b, s, d, K_l), budget in zip(levels, _iterations_per_level(steps, len(levels))):
        if budget == 0:
            continue
        u, v = params.trajectories(theta[None])
        sub = _subframes_needed(u, v, K_l, params.metres, most_subframes)

        def residuals(points: torch.Tensor) -> torch.Tensor:
            """(B, P) parameter vectors -> (B, N) re-blur residuals at this level."""
            uu, vv = params.trajectories(points)
            B = points.shape[0]
            out = reblur(s.expand(B, -1, -1, -1), d.expand(B, -1, -1, -1), pose_from_uv(uu, vv), K_l.expand(B, -1, -1),
                         subframes=sub, averaging=averaging, validate=False)
            return (out - b).flatten(1)

        def linearise(point: torch.Tensor, c: float):
            """The residual at ``point``, its Huber cost at threshold ``c``, the IRLS weights and the
            forward-difference Jacobian (P, N), in one batch."""
            R = residuals(torch.cat([point[None], point[None] + probe]))
            cost, w = _huber(R[0], c)
            return R[0], cost, w, (R[1:] - R[0]) / eps

        with torch.no_grad():
            c = math.inf  # least squares, or the Huber threshold measured on this level's first residuals
            r, cost, w, J = linearise(theta, c)
            if robust > 0:
                c = huber_threshold(r.abs(), robust, 1e-4)
                cost, w = _huber(r, c)
            # the roll prior: mu * theta_roll^2 added to the cost, a roll of ROLL_PRIOR_DEG, or ROLL_PRIOR_SHARE of
            # the yaw and pitch at this level's start where that is more, costing roll_prior times its starting misfit
            spread = max(math.radians(ROLL_PRIOR_DEG), ROLL_PRIOR_SHARE * float(u[0, :, :2].norm(dim=-1).max()))
            mu = is_roll * (roll_prior * cost / spread ** 2)
            cost += float((mu * theta * theta).sum())
            history.append(cost / r.numel())
            damping = 1e-3
            for _ in range(budget):
                done += 1
                JTJ, g = (J * w) @ J.T + torch.diag(mu), J @ (w * r) + mu * theta
                diag = torch.diag(JTJ.diagonal().clamp_min(1e-12))
                improved = False
                while damping < 1e8:
                    trial = theta - torch.linalg.solve(JTJ + damping * diag, g)
                    r_t, cost_t, w_t, J_t = linearise(trial, c)  # the trial's Jacobian, for use if accepted
                    cost_t += float((mu * trial * trial).sum())
                    if math.isfinite(cost_t) and cost_t < cost:
                        gain = (cost - cost_t) / cost
                        theta, r, cost, w, J = trial, r_t, cost_t, w_t, J_t
                        damping, improved = max(damping / 3, 1e-7), True
                        history.append(cost / r.numel())
                        break
                    damping *= 4
                if not improved or gain < 1e-4:
                    break
    u, v = params.trajectories(theta[None])
    return (u, v), history, done


def _refine_adam(blurred, sharp, depth, u0, v0, K, steps, averaging, motion, translation, lrs, sharp_weight, start):
    """The trajectory and the sharp frame together, with Adam: the best (u, v, sharp), energies, steps."""
    fit = _Fit(u0, v0, sharp, motion, translation, lrs)
    # The starting point is a candidate too, so refinement never returns a worse fit. Its energy is the error of
    # `start` (the sharp-frame term is zero there).
    fit.best_loss, fit.best = float((start - blurred).pow(2).mean()), (u0.clone(), v0.clone(), sharp.clone())
    fit.history.append(fit.best_loss)
    levels = {True: (_half(blurred), _half(sharp), _half(depth), scale_intrinsics(K, 0.5, 0.5)),
              False: (blurred, sharp, depth, K)}
    for step in range(steps):
        coarse = step < steps // 2  # the first half at half resolution
        b_t, s_t, d_t, K_t = levels[coarse]
        loss = _energy(b_t, fit.sharp(s_t, coarse), d_t, K_t, *fit.trajectory(), averaging, s_t, sharp_weight)
        if not coarse:
            fit.consider(float(loss.detach()), sharp)  # the energy of the parameters before this step's update
        fit.step(loss, step / max(steps - 1, 1))
    with torch.no_grad():  # the parameters after the last update
        fit.consider(float(_energy(blurred, fit.sharp(sharp), depth, K, *fit.trajectory(), averaging, sharp,
                                   sharp_weight)), sharp)
    return fit.best, fit.history, steps
