"""Camera geometry: poses, projection, depth-based warping and re-blurring.

Conventions (fixed for the whole package; every one is pinned by a test in ``tests/test_geometry.py``):

* **Camera axes** are OpenCV's: x right, y down, z forward.
* **Pixels**: pixel coordinates ``(x, y) = (0, 0)`` are the *centre* of the top-left pixel; ``x`` grows to the right,
  ``y`` down. An image of width ``W`` spans ``x`` in ``[-0.5, W - 0.5]``. (``u`` and ``v`` always mean pose
  parameters, below.)
* **Depth** is z-depth (the point's z coordinate in the camera frame) in metres, not the distance along the ray.
* **Intrinsics** ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels of the image they go with.
* **Poses**: the pose ``T_k`` of frame ``k`` is the 4x4 rigid transform that maps a point from the *reference*
  camera's coordinates into frame ``k``'s camera coordinates, ``X_k = R_k X_ref + t_k``. A reference pixel ``p``
  with depth ``D(p)`` therefore lands at ``p_k ~ K T_k D(p) K^-1 p`` (the paper's Eq. 2 and 6).
* **Pose parameters**: ``u`` is the axis-angle vector of ``R_k`` in radians, ``v = t_k`` in metres (the paper's u and v).
* **Trajectories**: an exposure is ``2n + 1`` instants; the reference is the middle one (index ``n``, pose = identity)
  and the ``2n`` other poses are stored in time order without it: ``poses[j]`` is instant ``j`` for ``j < n`` and
  instant ``j + 1`` for ``j >= n``. Reversing time reverses that list.

All functions take batched tensors, hold no state and are differentiable where that makes sense. Public functions
check shapes and say which argument is wrong; the value checks (finite, positive depth, invertible K) can be turned
off with ``validate=False`` inside training loops, where they would force a device synchronisation every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.geometry.camera.perspective import project_points, unproject_points
from kornia.geometry.conversions import (
    axis_angle_to_rotation_matrix,
    quaternion_to_rotation_matrix,
    rotation_matrix_to_axis_angle,
    rotation_matrix_to_quaternion,
)
try:  # kornia >= 0.8.3 moved it; older releases only have kornia.utils
    from kornia.geometry import create_meshgrid
except ImportError:  # pragma: no cover
    from kornia.utils import create_meshgrid

from .imaging import Averaging, linear_to_srgb, srgb_to_linear

__all__ = [
    "GeometryError",
    "pose_from_uv",
    "uv_from_pose",
    "invert_pose",
    "quaternion_from_rotation",
    "rotation_from_quaternion",
    "scale_intrinsics",
    "backproject",
    "project",
    "forward_flow",
    "path_steps",
    "warp",
    "trajectory_with_reference",
    "interpolate_trajectory",
    "reblur",
    "warp_frames",
    "exposure_sampler",
    "point_cloud",
]


class GeometryError(ValueError):
    """Raised when an argument to a geometry function has the wrong shape or an impossible value."""


# ----------------------------------------------------------------------------------------------------------------
# argument checks


def _check_shape(name: str, x: torch.Tensor, pattern: str) -> None:
    """Check ``x`` against a pattern such as ``"B,1,H,W"`` (letters free, digits fixed, ``...`` any leading dims)."""
    if not torch.is_tensor(x):
        raise GeometryError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    dims = [d.strip() for d in pattern.split(",")]
    fixed = dims[1:] if dims[0] == "..." else dims
    ok = x.dim() >= len(fixed) if dims[0] == "..." else x.dim() == len(fixed)
    if ok:
        for d, s in zip(fixed, x.shape[x.dim() - len(fixed):]):
            if d.isdigit() and int(d) != s:
                ok = False
    if not ok:
        raise GeometryError(f"{name} must have shape ({pattern}), got {tuple(x.shape)}")


def _check_intrinsics(K: torch.Tensor, batch: int | None, validate: bool) -> torch.Tensor:
    """Return K as (B, 3, 3), broadcasting a single (3, 3) matrix; check it can be inverted."""
    if torch.is_tensor(K) and K.dim() == 2:
        K = K.unsqueeze(0)
    _check_shape("K", K, "B,3,3")
    if batch is not None and K.shape[0] not in (1, batch):
        raise GeometryError(f"K has batch size {K.shape[0]} but the images have {batch}; pass one K or one per image")
    if batch is not None and K.shape[0] == 1 and batch > 1:
        K = K.expand(batch, 3, 3)
    if validate:
        if not torch.isfinite(K).all():
            raise GeometryError("K has non-finite entries; pass finite intrinsics in pixels")
        fx, fy = K[:, 0, 0], K[:, 1, 1]
        bottom = K.new_tensor([0.0, 0.0, 1.0])
        if (fx.abs() < 1e-9).any() or (fy.abs() < 1e-9).any() or not torch.allclose(K[:, 2], bottom.expand_as(K[:, 2])):
            raise GeometryError("K is singular or not a pinhole matrix: need fx != 0, fy != 0 and a last row (0, 0, 1)")
    return K


def _check_depth(depth: torch.Tensor, validate: bool, name: str = "depth_ref") -> None:
    _check_shape(name, depth, "B,1,H,W")
    if validate:
        if not torch.isfinite(depth).all():
            raise GeometryError(f"{name} has non-finite values (NaN or inf); fill holes before warping")
        if (depth <= 0).any():
            raise GeometryError(f"{name} has values <= 0; depth must be positive z-depth in metres everywhere")


def _check_pose(name: str, T: torch.Tensor, validate: bool) -> None:
    _check_shape(name, T, "...,4,4")
    if validate and not torch.isfinite(T).all():
        raise GeometryError(f"{name} has non-finite entries")


# ----------------------------------------------------------------------------------------------------------------
# poses


def pose_from_uv(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Build 4x4 rigid transforms from axis-angle rotations ``u`` (radians) and translations ``v`` (metres).

    Args:
        u: (..., 3) axis-angle vectors.
        v: (..., 3) translations.

    Returns:
        (..., 4, 4) transforms ``[[R(u), v], [0, 1]]``.

    Example:
        >>> T = pose_from_uv(torch.zeros(3), torch.tensor([0.1, 0.0, 0.0]))
        >>> T[:3, 3].tolist()
        [0.10000000149011612, 0.0, 0.0]
    """
    _check_shape("u", u, "...,3")
    _check_shape("v", v, "...,3")
    if u.shape != v.shape:
        raise GeometryError(f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    lead = u.shape[:-1]
    R = axis_angle_to_rotation_matrix(u.reshape(-1, 3)).reshape(*lead, 3, 3)
    top = torch.cat([R, v.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros(*lead, 1, 4, dtype=u.dtype, device=u.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def uv_from_pose(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split 4x4 rigid transforms into axis-angle rotation ``u`` (radians) and translation ``v`` (metres).

    Args:
        T: (..., 4, 4) transforms.

    Returns:
        ``(u, v)``, each (..., 3).
    """
    _check_pose("T", T, validate=False)
    lead = T.shape[:-2]
    u = rotation_matrix_to_axis_angle(T[..., :3, :3].reshape(-1, 3, 3)).reshape(*lead, 3)
    return u, T[..., :3, 3]


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Invert rigid transforms (..., 4, 4) using ``R^T`` rather than a general matrix inverse."""
    _check_pose("T", T, validate=False)
    R_inv = T[..., :3, :3].transpose(-1, -2)
    t_inv = -(R_inv @ T[..., :3, 3:4])
    out = torch.zeros_like(T)
    out[..., :3, :3] = R_inv
    out[..., :3, 3:4] = t_inv
    out[..., 3, 3] = 1.0
    return out


def quaternion_from_rotation(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions ``(w, x, y, z)`` with ``w >= 0``.

    Example:
        >>> quaternion_from_rotation(torch.eye(3, dtype=torch.float64)).tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    _check_shape("R", R, "...,3,3")
    q = rotation_matrix_to_quaternion(R.reshape(-1, 3, 3))
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q).reshape(*R.shape[:-2], 4)


def rotation_from_quaternion(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions ``(w, x, y, z)`` (normalised here) -> (..., 3, 3) rotation matrices."""
    _check_shape("q", q, "...,4")
    q = q / q.norm(dim=-1, keepdim=True)
    return quaternion_to_rotation_matrix(q.reshape(-1, 4)).reshape(*q.shape[:-1], 3, 3)


# ----------------------------------------------------------------------------------------------------------------
# intrinsics and projection


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics for an image resized by factors ``sx`` (width) and ``sy`` (height).

    With pixel centres at integer coordinates, a resize maps ``x' = sx (x + 0.5) - 0.5``, so
    ``fx' = sx fx`` and ``cx' = sx (cx + 0.5) - 0.5`` (likewise for y). This is what
    ``torch.nn.functional.interpolate(..., align_corners=False)`` and PIL's ``resize`` do to an image.

    Args:
        K: (..., 3, 3) intrinsics.
        sx: new width / old width.
        sy: new height / old height.

    Example:
        >>> K = torch.tensor([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
        >>> scale_intrinsics(K, 0.5, 0.5)[:2].tolist()
        [[250.0, 0.0, 159.5], [0.0, 250.0, 119.5]]
    """
    _check_shape("K", K, "...,3,3")
    if not (sx > 0 and sy > 0):
        raise GeometryError(f"scale factors must be positive, got sx={sx}, sy={sy}")
    out = K.clone()
    out[..., 0, :] = K[..., 0, :] * sx
    out[..., 1, :] = K[..., 1, :] * sy
    out[..., 0, 2] = sx * (K[..., 0, 2] + 0.5) - 0.5
    out[..., 1, 2] = sy * (K[..., 1, 2] + 0.5) - 0.5
    return out


def pixel_grid(H: int, W: int, like: torch.Tensor) -> torch.Tensor:
    """(1, H, W, 2) pixel coordinates (x, y) of pixel centres."""
    return create_meshgrid(H, W, normalized_coordinates=False, device=like.device, dtype=like.dtype)


def backproject(depth: torch.Tensor, K: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Lift every pixel to 3D in its camera's frame: ``X = D(p) K^-1 p``.

    Args:
        depth: (B, 1, H, W) z-depth in metres.
        K: (B, 3, 3) or (3, 3) intrinsics.

    Returns:
        (B, H, W, 3) points in metres, camera coordinates.
    """
    _check_shape("depth", depth, "B,1,H,W")
    if validate and not torch.isfinite(depth).all():
        raise GeometryError("depth has non-finite values (NaN or inf)")
    B, _, H, W = depth.shape
    K = _check_intrinsics(K, B, validate)
    grid = pixel_grid(H, W, depth).expand(B, H, W, 2)
    return unproject_points(grid, depth.permute(0, 2, 3, 1), K[:, None, None])


def project(points: torch.Tensor, K: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Project camera-frame points to pixels: ``p ~ K X``.

    Args:
        points: (B, ..., 3) points in camera coordinates with z > 0.
        K: (B, 3, 3) or (3, 3) intrinsics.

    Returns:
        (B, ..., 2) pixel coordinates (x, y).
    """
    _check_shape("points", points, "...,3")
    if points.dim() < 2:
        raise GeometryError(f"points must have shape (B, ..., 3), got {tuple(points.shape)}")
    K = _check_intrinsics(K, points.shape[0], validate)
    Kb = K.reshape(K.shape[0], *([1] * (points.dim() - 2)), 3, 3)
    return project_points(points, Kb)


# ----------------------------------------------------------------------------------------------------------------
# warping


def _sample(x: torch.Tensor, pix: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Bilinearly sample (B, C, H, W) at pixel coordinates (B, H', W', 2)."""
    H, W = x.shape[-2:]
    # kornia.geometry.normalize_pixel_coordinates's affine map for align_corners=True, in one fused multiply-add.
    scale = pix.new_tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)])
    grid = torch.addcmul(pix.new_tensor(-1.0), pix, scale)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def forward_flow(depth_ref: torch.Tensor, T: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each reference pixel lands in frame ``k``: the paper's ``p' = K T D(p) K^-1 p`` minus ``p``.

    Args:
        depth_ref: (B, 1, H, W) reference z-depth, metres.
        T: (B, 4, 4) reference-to-frame-k poses, or (B, M, 4, 4) for M frames at once.
        K: (B, 3, 3) intrinsics.

    Returns:
        ``(flow, z_k)``: flow (B, 2, H, W) in pixels and the points' depth in frame k, (B, 1, H, W);
        with M poses, (B, M, 2, H, W) and (B, M, 1, H, W).
    """
    single = T.dim() == 3
    T = T[:, None] if single else T
    B, _, H, W = depth_ref.shape
    X = backproject(depth_ref, K, validate=False)  # (B, H, W, 3), computed once for all poses
    X_k = torch.einsum("bmij,bhwj->bmhwi", T[..., :3, :3], X) + T[:, :, None, None, :3, 3]
    z_k = X_k[..., 2:3]
    # Points behind frame k's camera have no image there; keep the division finite and let `warp` mark them invalid.
    safe = torch.where(z_k > 1e-6, z_k, torch.full_like(z_k, 1e-6))
    X_k = torch.cat([X_k[..., :2], safe], dim=-1)
    p_k = project_points(X_k, K[:, None, None, None])
    flow = (p_k - pixel_grid(H, W, depth_ref)).permute(0, 1, 4, 2, 3)
    z_k = z_k.permute(0, 1, 4, 2, 3)
    return (flow[:, 0], z_k[:, 0]) if single else (flow, z_k)


def path_steps(depth_ref: torch.Tensor, T: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """How far each reference pixel moves between consecutive instants of an exposure, in pixels.

    Args:
        depth_ref: (B, 1, H, W) reference z-depth, metres.
        T: (B, M, 4, 4) reference-to-instant poses of the M instants in time order (the reference's identity
            included, e.g. :func:`trajectory_with_reference` of the 2n poses).
        K: (B, 3, 3) intrinsics.

    Returns:
        (B, M - 1, H, W): the length of each pixel's step from instant m to m + 1; summed over the steps, its path
        through the exposure.
    """
    flow, _ = forward_flow(depth_ref, T, K)  # (B, M, 2, H, W)
    return (flow[:, 1:] - flow[:, :-1]).norm(dim=2)


def _targets(H: int, W: int, like: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """(1, h, w, 2) coordinates of the target pixels: every pixel, or the (h, w, 2) integer ``pixels`` (x, y)."""
    return pixel_grid(H, W, like) if pixels is None else pixels.to(like)[None]


def _source_pixels(depth_ref: torch.Tensor, T: torch.Tensor, K: torch.Tensor, iterations: int,
                   pixels: torch.Tensor | None = None):
    """For each of M frames, the reference pixel each target pixel reads (see :func:`warp`): p (B * M, h, w, 2), with
    the forward flow (B * M, 2, H, W) and the points' depth in each frame (B, M, 1, H, W). The target pixels are all
    pixels (h, w = H, W) or the given (h, w, 2) integer ``pixels`` (x, y), each solved exactly as in the dense warp."""
    B, _, H, W = depth_ref.shape
    flow, z_k = forward_flow(depth_ref, T, K)  # (B, M, 2, H, W)
    flow = flow.reshape(-1, 2, H, W)
    q = _targets(H, W, depth_ref, pixels)
    q = q.expand(flow.shape[0], *q.shape[1:])
    first = flow if pixels is None else flow[:, :, pixels[..., 1], pixels[..., 0]]  # the flow at q, exactly
    p = q - first.permute(0, 2, 3, 1)
    for _ in range(iterations):
        p = q - _sample(flow, p, "border").permute(0, 2, 3, 1)
    return p, flow, z_k


def exposure_sampler(depth_ref: torch.Tensor, poses: torch.Tensor, K: torch.Tensor, subframes: int = 1,
                     iterations: int = 3):
    """The re-blur of :func:`reblur` as a linear operator of the sharp image, for fixed depth and poses.

    Returns a function that maps a (1, C, H, W) image (in whatever space the caller averages: linear light for a
    camera) to the mean of its 2n * subframes + 1 warps, border-padded. The sampling positions are computed once, so
    applying it costs one bilinear sampling per instant, and it is differentiable with respect to the image (its
    adjoint is its gradient), which is what a deconvolution needs.

    Args:
        depth_ref: (1, 1, H, W) reference z-depth, metres.
        poses: (1, 2n, 4, 4) poses of the other instants in time order.
        K: (1, 3, 3) intrinsics.
    """
    traj = interpolate_trajectory(trajectory_with_reference(poses), subframes)
    p, _, _ = _source_pixels(depth_ref, traj, _check_intrinsics(K, 1, False), iterations)
    M, H, W = p.shape[0], p.shape[1], p.shape[2]
    grid = p.reshape(1, M * H, W, 2)

    def apply(image: torch.Tensor) -> torch.Tensor:
        C = image.shape[1]
        return _sample(image, grid, "border").reshape(1, C, M, H, W).mean(dim=2)

    return apply


def _warp_many(
    image_ref: torch.Tensor, depth_ref: torch.Tensor, T: torch.Tensor, K: torch.Tensor, iterations: int, padding_mode: str,
    need_valid: bool = True, pixels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp one reference image to M poses: T (B, M, 4, 4) -> images (B, M, C, h, w), valid (B, M, 1, h, w).

    ``need_valid=False`` skips the validity test (two more samplings per frame) and returns None for it; only with
    ``padding_mode="border"``, where the images do not depend on it. ``pixels`` (h, w, 2), integer (x, y): warp only
    those target pixels, with the values the dense warp has there (by default every pixel: h, w = H, W)."""
    B, C, H, W = image_ref.shape
    M = T.shape[1]
    p, flow, z_k = _source_pixels(depth_ref, T, K, iterations, pixels)
    h, w = p.shape[1:3]
    q = _targets(H, W, image_ref, pixels).expand(B * M, h, w, 2)
    # All M frames read the same source: stack their sampling grids along the height instead of copying the image.
    image_k = _sample(image_ref, p.reshape(B, M * h, w, 2), padding_mode).reshape(B, C, M, h, w).transpose(1, 2)
    if not need_valid and padding_mode == "border":
        return image_k, None
    # How well p solves g(p) = q, and whether the point is in front of camera k and inside the reference image.
    residual = (p + _sample(flow, p, "border").permute(0, 2, 3, 1) - q).norm(dim=-1, keepdim=True)
    inside = (p[..., :1] >= -0.5) & (p[..., :1] <= W - 0.5) & (p[..., 1:] >= -0.5) & (p[..., 1:] <= H - 0.5)
    in_front = _sample(z_k.reshape(B * M, 1, H, W), p, "border").permute(0, 2, 3, 1) > 1e-6
    valid = (inside & in_front & (residual < 0.05)).permute(0, 3, 1, 2).to(image_ref.dtype).reshape(B, M, 1, h, w)
    if padding_mode == "zeros":
        image_k = image_k * valid
    return image_k, valid.detach()


def warp(
    image_ref: torch.Tensor,
    depth_ref: torch.Tensor,
    T: torch.Tensor,
    K: torch.Tensor,
    iterations: int = 3,
    padding_mode: str = "zeros",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image that frame ``k`` sees, built from the reference frame, its depth and the pose ``T_k``.

    Only the *reference* depth is known, so the paper's mapping ``g(p) = K T D(p) K^-1 p`` goes forward, from
    reference pixels to frame ``k``. To get a dense image without holes we invert it per target pixel ``q``: find the
    reference pixel ``p`` with ``g(p) = q`` by the fixed-point iteration ``p <- q - f(p)``, where ``f = g - id`` is the
    forward flow sampled bilinearly. The first step (``p = q - f(q)``) is the common approximation that borrows the
    depth at ``q``; the further steps remove its error, exactly where depth is smooth. The iteration converges when
    the flow changes by less than a pixel per pixel (true for hand-held blur); where it does not (depth edges with
    occlusion), or ``p`` falls outside the reference image, or the point is behind camera ``k``, ``valid`` is 0.
    Disoccluded regions, which the reference never saw, are therefore invalid rather than invented.

    Args:
        image_ref: (B, C, H, W) reference image.
        depth_ref: (B, 1, H, W) reference z-depth, metres, > 0.
        T: (B, 4, 4) pose of frame k (reference-to-frame-k), or (B, M, 4, 4) for M frames at once (each as if
            alone, in one batch).
        K: (B, 3, 3) or (3, 3) intrinsics.
        iterations: fixed-point steps after the first guess.
        padding_mode: ``"zeros"`` (invalid pixels read 0) or ``"border"`` (they repeat the nearest edge).
        validate: check values (finite, positive depth, invertible K); turn off in training loops.

    Returns:
        ``(image_k, valid)``: (B, C, H, W) and a (B, 1, H, W) mask of 0/1 in ``image_ref``'s dtype; with M poses,
        (B, M, C, H, W) and (B, M, 1, H, W). Differentiable with respect to ``image_ref``, ``depth_ref`` and ``T``.

    Example:
        >>> img, depth = torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
        >>> K = torch.tensor([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]])
        >>> out, valid = warp(img, depth, torch.eye(4)[None], K)
        >>> bool(torch.allclose(out, img, atol=1e-5)), bool(valid.all())
        (True, True)
    """
    _check_shape("image_ref", image_ref, "B,C,H,W")
    _check_depth(depth_ref, validate)
    _check_pose("T", T, validate)
    single = T.dim() != 4
    _check_shape("T", T, "B,4,4" if single else "B,M,4,4")
    B, _, H, W = image_ref.shape
    if depth_ref.shape[0] != B or depth_ref.shape[-2:] != (H, W):
        raise GeometryError(f"depth_ref {tuple(depth_ref.shape)} does not match image_ref {tuple(image_ref.shape)}")
    if T.shape[0] != B:
        raise GeometryError(f"T has batch size {T.shape[0]} but image_ref has {B}")
    if iterations < 0:
        raise GeometryError(f"iterations must be >= 0, got {iterations}")
    K = _check_intrinsics(K, B, validate)
    image_k, valid = _warp_many(image_ref, depth_ref, T[:, None] if single else T, K, iterations, padding_mode)
    return (image_k[:, 0], valid[:, 0]) if single else (image_k, valid)


# ----------------------------------------------------------------------------------------------------------------
# trajectories and re-blurring


def trajectory_with_reference(poses: torch.Tensor) -> torch.Tensor:
    """Insert the reference (identity) pose in the middle: (B, 2n, 4, 4) -> (B, 2n + 1, 4, 4)."""
    _check_shape("poses", poses, "B,M,4,4")
    M = poses.shape[1]
    if M % 2:
        raise GeometryError(f"poses must hold an even number 2n of poses (reference excluded), got {M}")
    eye = torch.eye(4, dtype=poses.dtype, device=poses.device).expand(poses.shape[0], 1, 4, 4)
    return torch.cat([poses[:, : M // 2], eye, poses[:, M // 2:]], dim=1)


def interpolate_trajectory(trajectory: torch.Tensor, subframes: int) -> torch.Tensor:
    """Sample ``subframes`` instants per interval of a (B, 2n + 1, 4, 4) trajectory: (B, 2n * subframes + 1, 4, 4).

    Between two consecutive instants the rotation vector ``u`` and translation ``v`` are interpolated linearly.
    The synthetic data engine draws its sub-frame instants with the same rule, so ``reblur(..., subframes=s)``
    re-creates its exposure integral exactly. ``subframes=1`` returns the input.
    """
    _check_shape("trajectory", trajectory, "B,M,4,4")
    if subframes < 1:
        raise GeometryError(f"subframes must be >= 1, got {subframes}")
    if subframes == 1:
        return trajectory
    u, v = uv_from_pose(trajectory)
    lam = torch.arange(subframes, dtype=u.dtype, device=u.device) / subframes  # (s,)
    lam = lam[None, None, :, None]

    def fill(x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, :-1, None], x[:, 1:, None]
        inner = ((1 - lam) * a + lam * b).flatten(1, 2)
        return torch.cat([inner, x[:, -1:]], dim=1)

    return pose_from_uv(fill(u), fill(v))


REBLUR_CHUNK_PIXELS = 1 << 23
"""Pixels (instants x batch x image) :func:`reblur` warps in one batch; larger exposures are warped in groups."""


def _report_frames(on_frame, frames: torch.Tensor, first: int, subframes: int, linear: bool) -> None:
    """Hand the frame instants among ``frames`` (instants ``first``, ``first + 1``, ... of the exposure) to
    ``on_frame``."""
    if on_frame is None:
        return
    for j in range(-first % subframes, frames.shape[1], subframes):
        on_frame((first + j) // subframes, linear_to_srgb(frames[:, j]) if linear else frames[:, j])


def reblur(
    image_ref: torch.Tensor,
    depth_ref: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    subframes: int = 1,
    averaging: Averaging = "linear",
    iterations: int = 3,
    return_valid: bool = False,
    validate: bool = True,
    pixels: torch.Tensor | None = None,
    on_frame: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Re-create the blurred image: the mean of the reference frame and its warps (the paper's B-hat of Eq. 7).

    With ``subframes=1`` this is the paper's average of ``2n + 1`` frames. With ``subframes=s`` each interval between
    two instants is sampled ``s`` times (see :func:`interpolate_trajectory`), which removes the ghosting of a plain
    7-frame average when motion is fast. The frames are averaged in linear light (sRGB decoded, averaged, encoded),
    as a camera sensor integrates light, or with ``averaging="srgb"`` as sRGB values (the paper's Eq. 7).

    Pixels that some warp cannot fill (see :func:`warp`) take that frame's nearest in-image value; the returned
    ``valid`` mask (with ``return_valid=True``) is 1 only where every frame had a true source, for masking losses.

    Args:
        image_ref: (B, C, H, W) sharp reference frame, sRGB in [0, 1] when averaging in linear light.
        depth_ref: (B, 1, H, W) reference z-depth, metres.
        poses: (B, 2n, 4, 4) poses of the other instants in time order (see the module docstring).
        K: (B, 3, 3) or (3, 3) intrinsics.
        pixels: (h, w, 2) integer pixel coordinates (x, y): re-create only these pixels, with the values of the
            whole re-blur there, at a fraction of the cost (the forward flow is still computed for every pixel); for
            estimating a large image's re-blur error.
        on_frame: called as ``on_frame(k, image)`` with each of the 2n + 1 frame instants' warped image (k in time
            order, the reference at n; (B, C, H, W), sRGB again when averaging in linear light) as the re-blur warps
            it: the re-projected frames at no extra cost, one at a time so that large images stay within memory.

    Returns:
        (B, C, H, W) blurred image, and (B, 1, H, W) validity when ``return_valid``; (h, w) instead of (H, W) with
        ``pixels``.
    """
    _check_shape("image_ref", image_ref, "B,C,H,W")
    _check_depth(depth_ref, validate)
    _check_shape("poses", poses, "B,M,4,4")
    _check_pose("poses", poses, validate)
    B, C, H, W = image_ref.shape
    if poses.shape[0] != B:
        raise GeometryError(f"poses has batch size {poses.shape[0]} but image_ref has {B}")
    K = _check_intrinsics(K, B, validate)
    if pixels is not None:
        _check_shape("pixels", pixels, "h,w,2")
        if pixels.dtype not in (torch.int32, torch.int64) or pixels.numel() == 0:
            raise GeometryError(f"pixels must be a non-empty integer tensor of (x, y), got {pixels.dtype}")
        if bool((pixels < 0).any() | (pixels[..., 0] >= W).any() | (pixels[..., 1] >= H).any()):
            raise GeometryError(f"pixels must lie inside the {W} x {H} image")

    traj = interpolate_trajectory(trajectory_with_reference(poses), subframes)
    linear = averaging == "linear"
    src = srgb_to_linear(image_ref) if linear else image_ref
    M = traj.shape[1]
    per_warp = max(1, REBLUR_CHUNK_PIXELS // (B * H * W))
    if per_warp >= M:
        # All instants in one batched warp; the reference instant warps to itself exactly.
        frames, valid = _warp_many(src, depth_ref, traj, K, iterations, "border", return_valid, pixels)
        _report_frames(on_frame, frames, 0, subframes, linear)
        blurred = frames.mean(dim=1)
    else:  # a large image: instants in groups, so that memory stays bounded
        total, valid_parts = 0.0, []
        for i in range(0, M, per_warp):
            frames, valid = _warp_many(src, depth_ref, traj[:, i:i + per_warp], K, iterations, "border", return_valid,
                                       pixels)
            _report_frames(on_frame, frames, i, subframes, linear)
            total = total + frames.sum(dim=1)
            valid_parts.append(valid.amin(dim=1, keepdim=True) if return_valid else None)
        blurred, valid = total / M, torch.cat(valid_parts, dim=1) if return_valid else None
    if linear:
        blurred = linear_to_srgb(blurred)
    if return_valid:
        return blurred, valid.amin(dim=1)
    return blurred


def warp_frames(image_ref: torch.Tensor, depth_ref: torch.Tensor, T: torch.Tensor, K: torch.Tensor,
                iterations: int = 3) -> torch.Tensor:
    """The images M poses see, each ``warp(image_ref, depth_ref, T[:, k], K, padding_mode="border")[0]``: (B, C, H, W)
    and (B, M, 4, 4) -> (B, M, C, H, W).

    Pixels the reference never saw repeat the nearest edge. The poses are warped together (a few at a time on large
    images, as :func:`reblur` does) and without the validity test, which border padding does not need.
    """
    _check_shape("image_ref", image_ref, "B,C,H,W")
    _check_shape("T", T, "B,M,4,4")
    B, _, H, W = image_ref.shape
    K = _check_intrinsics(K, B, False)
    per_warp = max(1, REBLUR_CHUNK_PIXELS // (B * H * W))
    return torch.cat([_warp_many(image_ref, depth_ref, T[:, i:i + per_warp], K, iterations, "border", False)[0]
                      for i in range(0, T.shape[1], per_warp)], dim=1)


def point_cloud(
    image: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coloured 3D points of every pixel, in the reference camera's frame (metres).

    Args:
        image: (B, C, H, W) colours.
        depth: (B, 1, H, W) z-depth in metres; pixels with depth <= 0 or non-finite are marked invalid.
        K: (B, 3, 3) or (3, 3) intrinsics.

    Returns:
        ``(points, colors, valid)``: (B, H*W, 3), (B, H*W, C) and a boolean (B, H*W) in row-major pixel order.
    """
    _check_shape("image", image, "B,C,H,W")
    _check_shape("depth", depth, "B,1,H,W")
    if image.shape[0] != depth.shape[0] or image.shape[-2:] != depth.shape[-2:]:
        raise GeometryError(f"depth {tuple(depth.shape)} does not match image {tuple(image.shape)}")
    valid = torch.isfinite(depth) & (depth > 0)
    safe = torch.where(valid, depth, torch.ones_like(depth))
    pts = backproject(safe, K, validate=validate)
    B = image.shape[0]
    return pts.reshape(B, -1, 3), image.flatten(2).transpose(1, 2), valid.reshape(B, -1)
