"""Dense RGB-D odometry: the pose of one RGB-D frame relative to another, from colour and depth together.

For NYU Depth v2, which has no ground-truth poses, the builder estimates the pose of every frame of a window relative
to its middle frame with :func:`align`. It minimises, over the reference pixels p with depth, the robust sum of

* a photometric residual ``I_k(pi(K T X_p)) - I_ref(p)`` (grey levels in [0, 1]), and
* a geometric residual ``D_k(pi(K T X_p)) - z(T X_p)`` (the target's measured depth against the point's depth),

where ``X_p = D_ref(p) K^-1 p`` and T is the reference-to-frame pose in the package convention. Gauss-Newton with
analytic Jacobians and left-multiplied increments ``T <- exp(delta) T``, coarse to fine over an image pyramid
(1/4, 1/2, 1), Huber weights with each residual's scale estimated robustly (median absolute deviation) at every
iteration. The fit is reported (robust RMS of both residuals, the fraction of pixels used) so that a window with a
poor fit can be skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import normalize_pixel_coordinates

from ...geometry import backproject, pose_from_uv, scale_intrinsics


@dataclass
class AlignResult:
    pose: np.ndarray  # (4, 4) reference-to-frame
    photometric_rms: float  # robust RMS of the photometric residual at the finest level (grey levels)
    depth_rms_m: float  # robust RMS of the geometric residual at the finest level (metres)
    inlier_fraction: float  # fraction of reference pixels with depth that were used at the finest level
    iterations: int
    converged: bool

    def ok(self, max_photometric: float = 0.08, min_inliers: float = 0.3) -> bool:
        return self.converged and self.photometric_rms <= max_photometric and self.inlier_fraction >= min_inliers


def _gray(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(rgb, np.float64) / 255.0)
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[None, None]


def _down(gray: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Halve an image and a depth map; depth is averaged over valid pixels only (half valid or more)."""
    g = F.avg_pool2d(gray, 2, ceil_mode=True)
    valid = (depth > 0).double()
    s, c = F.avg_pool2d(depth * valid, 2, ceil_mode=True), F.avg_pool2d(valid, 2, ceil_mode=True)
    d = torch.where(c >= 0.5, s / c.clamp_min(1e-9), torch.zeros_like(s))
    return g, d


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    gx[..., 1:-1] = 0.5 * (x[..., 2:] - x[..., :-2])
    gy[..., 1:-1, :] = 0.5 * (x[..., 2:, :] - x[..., :-2, :])
    return gx, gy


def _sample(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (1, C, H, W) at N pixel positions (N, 2) -> (N, C)."""
    H, W = x.shape[-2:]
    grid = normalize_pixel_coordinates(p[None, None], H, W)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0].T


def _huber_weights(r: torch.Tensor, floor: float, k: float = 1.345) -> tuple[torch.Tensor, float]:
    """Huber weights with the residual's scale estimated robustly (MAD), never below ``floor``."""
    scale = max(float(1.4826 * (r - r.median()).abs().median()), floor)
    a = (r / scale).abs()
    return torch.where(a <= k, torch.ones_like(a), k / a), scale


def _through_projection(gx: torch.Tensor, gy: torch.Tensor, X: torch.Tensor, fx, fy) -> torch.Tensor:
    """d m(p) / d X (N, 3) of a map m with gradient (gx, gy) at the projection p = (fx x / z + cx, fy y / z + cy)
    of the points X (N, 3)."""
    inv_z = 1 / X[:, 2]
    a, b = gx * fx * inv_z, gy * fy * inv_z
    return torch.stack([a, b, -(a * X[:, 0] + b * X[:, 1]) * inv_z], dim=-1)


def _jacobian(X: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(N, 6) rows d r / d (translation, rotation) of residuals whose derivative by the point X is g (N, 3), for
    the left increment X <- exp(delta) X: g [I | -[X]x] = [g, X x g]."""
    return torch.cat([g, torch.linalg.cross(X, g, dim=-1)], dim=-1)


def _target_maps(gray_t: torch.Tensor, depth_t: torch.Tensor) -> torch.Tensor:
    """The target frame's maps sampled at each warped point: grey, its gradient, depth, its gradient, and where the
    depth residual is usable (the 3x3 neighbourhood measured and the surface smooth: no depth edge, across which a
    difference quotient is meaningless). (1, 7, H, W)."""
    gx, gy = _gradients(gray_t)
    dgx, dgy = _gradients(depth_t)
    measured = -F.max_pool2d(-(depth_t > 0).double(), 3, stride=1, padding=1)
    smooth = ((dgx.abs() + dgy.abs()) < 0.05 * depth_t).double()
    return torch.cat([gray_t, gx, gy, depth_t, dgx, dgy, measured * smooth], dim=1)


def _level(gray_r, depth_r, gray_t, depth_t, K, T, iterations, use_depth):
    """Gauss-Newton at one pyramid level; returns (T, stats, iterations run, converged)."""
    H, W = gray_r.shape[-2:]
    X_all = backproject(depth_r.clamp_min(1e-6), K, validate=False)[0].reshape(-1, 3)
    has_depth = (depth_r > 0).reshape(-1)
    X_ref = X_all[has_depth]
    I_ref = gray_r.reshape(-1)[has_depth]
    target = _target_maps(gray_t, depth_t)
    fx, fy, cx, cy = K[0, 0, 0], K[0, 1, 1], K[0, 0, 2], K[0, 1, 2]
    stats = {"photometric_rms": float("inf"), "depth_rms_m": float("inf"), "inlier_fraction": 0.0}
    converged = False
    it = 0
    for it in range(1, iterations + 1):
        Xk = X_ref @ T[:3, :3].T + T[:3, 3]
        z = Xk[:, 2]
        front = z > 1e-3
        zs = torch.where(front, z, torch.ones_like(z))
        p = torch.stack([fx * Xk[:, 0] / zs + cx, fy * Xk[:, 1] / zs + cy], -1)
        inside = front & (p[:, 0] >= 0) & (p[:, 0] <= W - 1) & (p[:, 1] >= 0) & (p[:, 1] <= H - 1)
        ok = inside
        if int(ok.sum()) < 50:
            break
        kept = torch.cat([Xk, _sample(target, p)], dim=1)[ok]  # the points and the target's maps there, in one index
        Xk, z = kept[:, :3], kept[:, 2]
        I, Ix, Iy, D, Dx, Dy, Dv = kept[:, 3:].unbind(-1)
        J_photo = _jacobian(Xk, _through_projection(Ix, Iy, Xk, fx, fy))
        r_photo = I - I_ref[ok]
        w_photo, s_photo = _huber_weights(r_photo, 0.005)
        rows, res, wts = [J_photo / s_photo], [r_photo / s_photo], [w_photo]
        use = Dv > 0.999
        if use_depth and int(use.sum()) >= 50:
            # the target's depth at the projection minus the point's own depth z = e3 . X
            Xu = Xk[use]
            g = _through_projection(Dx[use], Dy[use], Xu, fx, fy) - Xu.new_tensor([0.0, 0.0, 1.0])
            J_depth = _jacobian(Xu, g)
            r_depth = D[use] - Xu[:, 2]
            w_depth, s_depth = _huber_weights(r_depth, 0.005)
            rows.append(J_depth / s_depth)
            res.append(r_depth / s_depth)
            wts.append(w_depth)
            stats["depth_rms_m"] = float(torch.sqrt((w_depth * r_depth**2).sum() / w_depth.sum()))
        J, r, w = torch.cat(rows), torch.cat(res), torch.cat(wts)
        Hm = (J * w[:, None]).T @ J
        g = (J * w[:, None]).T @ r
        delta = -torch.linalg.solve(Hm + 1e-9 * torch.eye(6, dtype=Hm.dtype) * Hm.diagonal().mean(), g)
        T = pose_from_uv(delta[3:], delta[:3]) @ T
        stats["photometric_rms"] = float(torch.sqrt((w_photo * r_photo**2).sum() / w_photo.sum()))
        stats["inlier_fraction"] = float(ok.double().mean())  # of the reference pixels that have depth
        if float(delta[:3].norm()) < 1e-5 and float(delta[3:].norm()) < 1e-5:  # 10 micrometres, 10 microradians
            converged = True
            break
    return T, stats, it, converged


def align(ref_rgb: np.ndarray, ref_depth: np.ndarray, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
          init: np.ndarray | None = None, levels: int = 3, iterations: int = 30, use_depth: bool = True) -> AlignResult:
    """The pose (reference-to-frame, package convention) that maps the reference RGB-D frame onto the other one.

    Args:
        ref_rgb, rgb: (H, W, 3) uint8 colour; ref_depth, depth: (H, W) z-depth in metres, 0 = no reading.
        K: (3, 3) intrinsics of these images.
        init: starting pose (default identity).
        levels: pyramid levels (each halves the size).
        iterations: Gauss-Newton steps per level at most.
        use_depth: add the geometric residual (needs the frame's depth).
    """
    pyr = [(_gray(ref_rgb), torch.from_numpy(np.asarray(ref_depth, np.float64))[None, None],
            _gray(rgb), torch.from_numpy(np.asarray(depth, np.float64))[None, None])]
    for _ in range(levels - 1):
        gr, dr, gt, dt = pyr[-1]
        pyr.append((*_down(gr, dr), *_down(gt, dt)))
    T = torch.from_numpy(np.asarray(init, np.float64)) if init is not None else torch.eye(4, dtype=torch.float64)
    K0 = torch.as_tensor(K, dtype=torch.float64)[None]
    total, converged, stats = 0, False, {}
    for level in reversed(range(levels)):
        gr, dr, gt, dt = pyr[level]
        H0, W0 = ref_depth.shape
        Kl = scale_intrinsics(K0, gr.shape[-1] / W0, gr.shape[-2] / H0)
        T, stats, it, converged = _level(gr, dr, gt, dt, Kl, T, iterations, use_depth)
        total += it
    return AlignResult(T.numpy(), stats.get("photometric_rms", float("inf")), stats.get("depth_rms_m", float("inf")),
                       stats.get("inlier_fraction", 0.0), total, converged)


def window_poses(frames: list[tuple[np.ndarray, np.ndarray]], K: np.ndarray, **kwargs) -> tuple[np.ndarray, list[AlignResult]]:
    """Poses of the 2n + 1 RGB-D frames of a window relative to the middle one: (2n + 1, 4, 4) reference-to-frame,
    identity in the middle, and each frame's fit. Frames are aligned outwards from the middle, each starting from a
    constant-velocity guess."""
    n = (len(frames) - 1) // 2
    ref_rgb, ref_depth = frames[n]
    poses = [np.eye(4) for _ in frames]
    fits: list[AlignResult | None] = [None] * len(frames)
    for direction in (1, -1):
        for step in range(1, n + 1):
            k = n + direction * step
            prev = poses[k - direction]
            before = poses[k - 2 * direction] if step >= 2 else np.eye(4)
            guess = prev @ np.linalg.inv(before) @ prev
            fits[k] = align(ref_rgb, ref_depth, *frames[k], K, init=guess, **kwargs)
            poses[k] = fits[k].pose
    return np.stack(poses), [f for f in fits if f is not None]
