"""Camera poses from where pixels go: a robust, differentiable least-squares solve from per-pixel paths and depth.

Given, for every reference pixel ``p`` with depth ``D(p)``, where it is seen at each instant ``k`` of the exposure
(``p'_k``, its *path*), each pose ``T_k = [R_k | t_k]`` is the one whose projection ``K (R_k D(p) K^-1 p + t_k)``
lands on ``p'_k``: a perspective-n-point problem with known 3D points, solved here by Gauss-Newton from the identity
(the motion over an exposure is small) with iteratively reweighted least squares (Huber weights on the pixel
residual, times an optional per-pixel confidence). Every step is a differentiable torch operation, so a loss on the
poses trains whatever predicted the paths, the depth or the confidence.

Not every scene fixes all six degrees of freedom. Seen over a small field of view, a rotation about the camera's y
axis and a translation along x move a fronto-parallel plane's pixels almost alike; only depth variation and the
field of view tell them apart. :func:`solve_poses` reports two conditions per pose (eigenvalue ratios of the normal
equations, translation measured in units of the median depth so that both kinds of motion move pixels on the same
scale): ``condition``, of the whole motion, and ``rotation_condition``, of the rotation once the translation is
marginalised under the solve's translation prior (the Schur complement). It flags a pose ``degenerate`` when the
rotation is not determined, the part of hand-held motion that makes the blur, rather than the translation, which a
single photo rarely determines (on ordinary photos the whole motion's condition is 3e-3 to 1e-2 and says little).

Translation is the weak part: its image motion is scaled by 1 / depth and, over a small field of view, resembles a
rotation's, so errors in the paths that no rigid motion explains are readily fitted as translation. A zero-mean
Gaussian prior on the translation (``translation_prior``, a maximum a posteriori solve) keeps it near zero unless
the paths demand it; its weight is relative to the data's own curvature for rotation, so it means the same at any
resolution, confidence scale or number of pixels. The per-pixel motion head solves with :data:`TRANSLATION_PRIOR`.

It serves the per-pixel motion head (``model.motion: paths``, :class:`worldfromblur.models.compact.CompactPathMotion`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import backproject, pose_from_uv, uv_from_pose

MIN_ROTATION_CONDITION = 0.03
"""Poses whose rotation condition (translation marginalised under the prior) is lower are flagged degenerate.
Calibrated with the shipped model on real photos (``python -m experiments.motion_condition``, docs/reconstruct.md):
their 1st percentile is 0.12 to 0.29 (GoPro frames, BSDS500 photos, 7-Scenes frames, the examples), while a
textured plane facing a 7-degree lens scores 0.012: the flag fires where rotation and sideways motion cannot be
told apart, not on ordinary photos."""

TRANSLATION_PRIOR = 0.3
"""The prior weight the per-pixel motion head's poses are solved with (chosen on the synthetic validation split:
0.1 and 0.3 tied, 1 was worse, 0 much worse; see docs/models.md)."""


@dataclass
class PoseSolve:
    u: torch.Tensor  # (B, M, 3) axis-angle, radians
    v: torch.Tensor  # (B, M, 3) translation, metres
    residual_px: torch.Tensor  # (B, M) weighted RMS reprojection error of the solution, pixels
    condition: torch.Tensor  # (B, M) smallest / largest eigenvalue of the depth-scaled normal matrix (whole motion)
    rotation_condition: torch.Tensor  # (B, M) the rotation's, with the translation marginalised under the prior
    degenerate: torch.Tensor  # (B, M) bool: rotation_condition < min_rotation_condition (or not finite)

    @property
    def poses(self) -> torch.Tensor:
        return pose_from_uv(self.u, self.v)


def _skew(x: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = torch.zeros_like(x[..., 0])
    return torch.stack([torch.stack([z, -x[..., 2], x[..., 1]], -1), torch.stack([x[..., 2], z, -x[..., 0]], -1),
                        torch.stack([-x[..., 1], x[..., 0], z], -1)], -2)


def _residuals(T: torch.Tensor, X: torch.Tensor, target: torch.Tensor, K: torch.Tensor):
    """Reprojection residuals (B, M, N, 2) of points X (B, N, 3) under T (B, M, 4, 4), and their Jacobian
    (B, M, N, 2, 6) with respect to a left increment (rotation, translation)."""
    Xk = torch.einsum("bmij,bnj->bmni", T[..., :3, :3], X) + T[..., None, :3, 3]
    z = Xk[..., 2].clamp_min(1e-6)
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    p = torch.stack([fx * Xk[..., 0] / z + cx, fy * Xk[..., 1] / z + cy], -1)
    dp = torch.zeros(*z.shape, 2, 3, dtype=X.dtype, device=X.device)
    dp[..., 0, 0], dp[..., 0, 2] = fx / z, -fx * Xk[..., 0] / z**2
    dp[..., 1, 1], dp[..., 1, 2] = fy / z, -fy * Xk[..., 1] / z**2
    dX = torch.cat([-_skew(Xk), torch.eye(3, dtype=X.dtype, device=X.device).expand(*z.shape, 3, 3)], -1)
    return p - target, dp @ dX


def solve_poses(paths: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, confidence: torch.Tensor | None = None,
                iterations: int = 8, huber_px: float = 1.0, min_rotation_condition: float = MIN_ROTATION_CONDITION,
                stride: int = 1, translation_prior: float = 0.0) -> PoseSolve:
    """Poses of M instants from per-pixel paths.

    Args:
        paths: (B, M, 2, H, W) pixel coordinates (x, y) at each instant of every reference pixel.
        depth: (B, 1, H, W) reference z-depth, metres (pixels with depth <= 0 are ignored).
        K: (B, 3, 3) intrinsics.
        confidence: optional (B, M, 1, H, W) or (B, 1, H, W) non-negative per-pixel weights.
        iterations: Gauss-Newton / IRLS iterations (from the identity).
        huber_px: residual beyond which a pixel's weight falls as 1/|r| (robustness to wrong paths).
        min_rotation_condition: see :data:`MIN_ROTATION_CONDITION`.
        stride: use every ``stride``-th row and column (the solve needs far fewer points than pixels).
        translation_prior: weight of a zero-mean prior on each pose's translation (in units of the median depth),
            relative to the mean curvature of the data term for rotation; 0 (the default) is plain least squares,
            exact on exact data.

    Returns:
        A :class:`PoseSolve`; ``poses`` gives the (B, M, 4, 4) reference-to-instant transforms.
    """
    B, M = paths.shape[:2]
    paths, depth = paths[..., ::stride, ::stride], depth[..., ::stride, ::stride]
    H, W = depth.shape[-2:]
    K_s = K.clone()
    K_s[:, :2] = K_s[:, :2] / stride  # pixel (i, j) of the strided grid is pixel (i s, j s) of the full one
    X = backproject(depth.clamp_min(1e-6), K_s, validate=False).reshape(B, -1, 3)
    target = (paths / stride).permute(0, 1, 3, 4, 2).reshape(B, M, -1, 2)
    base = (depth > 0).reshape(B, 1, -1).to(X.dtype).expand(B, M, -1)
    if confidence is not None:
        conf = confidence[..., ::stride, ::stride].reshape(B, -1 if confidence.dim() == 5 else 1, H * W)
        base = base * conf.expand(B, M, -1).to(X.dtype)
    T = torch.eye(4, dtype=X.dtype, device=X.device).expand(B, M, 4, 4)
    zmed = depth.reshape(B, -1).median(dim=1).values.clamp_min(1e-3)
    scale = torch.cat([torch.ones(B, 3, dtype=X.dtype, device=X.device), zmed[:, None].expand(B, 3)], 1)[:, None]

    def normal_equations(T: torch.Tensor):
        """Residuals, IRLS weights, and the weighted normal matrix and gradient with translation in units of the
        median depth (so that the condition compares like with like)."""
        r, J = _residuals(T, X, target, K_s)
        norm = r.norm(dim=-1)
        w = base * torch.where(norm > huber_px, huber_px / norm.clamp_min(1e-12), torch.ones_like(norm))
        Js = J * scale[:, :, None, None, :]
        return r, w, torch.einsum("bmn,bmnci,bmncj->bmij", w, Js, Js), torch.einsum("bmn,bmnci,bmnc->bmi", w, Js, r)

    eye = torch.eye(6, dtype=X.dtype, device=X.device)
    for _ in range(iterations):
        _, _, Hm, g = normal_equations(T)
        diag = Hm.diagonal(dim1=-2, dim2=-1)
        damp = 1e-12 * diag.mean(-1)[..., None, None] * eye
        if translation_prior > 0:  # + lam |t / zmed|^2: its curvature on the translation block, its gradient at T
            lam = translation_prior * diag[..., :3].mean(-1)[..., None]
            damp = damp + lam[..., None] * torch.diag(eye.new_tensor([0, 0, 0, 1, 1, 1]))
            g = g + torch.cat([torch.zeros_like(g[..., :3]), lam * T[..., :3, 3] / zmed[:, None, None]], -1)
        delta = -torch.linalg.solve(Hm + damp, g[..., None])[..., 0] * scale
        T = pose_from_uv(delta[..., :3], delta[..., 3:]) @ T
    r, w, Hm, _ = normal_equations(T)
    finite = torch.isfinite(Hm).all(-1).all(-1)  # non-finite inputs give non-finite poses, flagged, not an error
    Hm = torch.where(finite[..., None, None], Hm, eye)
    nan = torch.full(Hm.shape[:-2], float("nan"), dtype=Hm.dtype, device=Hm.device)
    eig = torch.linalg.eigvalsh(Hm)
    condition = torch.where(finite, eig[..., 0] / eig[..., -1].clamp_min(1e-30), nan)
    # the rotation with the translation marginalised out, under the prior the solve used: the Schur complement
    diag = Hm.diagonal(dim1=-2, dim2=-1)
    lam = translation_prior * diag[..., :3].mean(-1) + 1e-12 * diag[..., 3:].mean(-1)  # (+ a guard for no prior)
    Htt = Hm[..., 3:, 3:] + lam[..., None, None] * eye[:3, :3]
    S = Hm[..., :3, :3] - Hm[..., :3, 3:] @ torch.linalg.solve(Htt, Hm[..., 3:, :3])
    eig_r = torch.linalg.eigvalsh(0.5 * (S + S.transpose(-1, -2)))
    rotation_condition = torch.where(finite, eig_r[..., 0] / eig_r[..., -1].clamp_min(1e-30), nan)
    residual = (stride * torch.sqrt((w * r.pow(2).sum(-1)).sum(-1) / w.sum(-1).clamp_min(1e-12)))
    u, v = uv_from_pose(T)
    return PoseSolve(u=u, v=v, residual_px=residual, condition=condition.detach(),
                     rotation_condition=rotation_condition.detach(),
                     degenerate=(~(rotation_condition >= min_rotation_condition)).detach())
