"""Every convention of worldfromblur.geometry pinned by a case worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from worldfromblur.evaluation.metrics import psnr
from worldfromblur.geometry import (
    GeometryError,
    backproject,
    interpolate_trajectory,
    invert_pose,
    path_steps,
    point_cloud,
    pose_from_uv,
    project,
    reblur,
    scale_intrinsics,
    trajectory_with_reference,
    uv_from_pose,
    warp,
    warp_frames,
)
from worldfromblur.imaging import blur_frames


def make_K(f=100.0, cx=31.5, cy=23.5, dtype=torch.float64):
    return torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=dtype)


def pose(u=(0, 0, 0), v=(0, 0, 0), dtype=torch.float64):
    return pose_from_uv(torch.tensor(u, dtype=dtype), torch.tensor(v, dtype=dtype))


# ---------------------------------------------------------------------------------------------------- poses


@pytest.mark.parametrize("batch", [(), (1,), (5,), (2, 3)])
def test_pose_uv_round_trip(batch):
    g = torch.Generator().manual_seed(0)
    u = (torch.rand(*batch, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0
    v = torch.randn(*batch, 3, generator=g, dtype=torch.float64)
    T = pose_from_uv(u, v)
    assert T.shape == (*batch, 4, 4)
    R = T[..., :3, :3]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(batch, dtype=torch.float64))
    u2, v2 = uv_from_pose(T)
    assert torch.allclose(u2, u, atol=1e-9) and torch.allclose(v2, v)


def test_pose_rotation_direction_is_right_handed():
    # A rotation of +90 degrees about z maps the x axis onto the y axis.
    T = pose((0, 0, math.pi / 2))
    x = T[:3, :3] @ torch.tensor([1.0, 0, 0], dtype=torch.float64)
    assert torch.allclose(x, torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)


def test_invert_pose():
    T = pose((0.1, -0.2, 0.3), (0.5, -1.0, 2.0))
    assert torch.allclose(invert_pose(T) @ T, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_pose_maps_reference_to_frame_k():
    # X_k = R X_ref + t: a pure translation t_x moves a point's coordinates by +t_x.
    T = pose(v=(0.2, 0, 0))
    X = torch.tensor([0.0, 0, 2.0, 1.0], dtype=torch.float64)
    assert torch.allclose(T @ X, torch.tensor([0.2, 0, 2.0, 1.0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------- intrinsics


def test_backproject_then_project_returns_pixel_grid():
    depth = torch.rand(2, 1, 6, 9, dtype=torch.float64) * 5 + 0.5
    K = make_K(f=50, cx=4.0, cy=2.5)
    X = backproject(depth, K)
    assert X.shape == (2, 6, 9, 3)
    assert torch.allclose(X[..., 2], depth[:, 0])
    uv = project(X, K)
    vv, uu = torch.meshgrid(torch.arange(6.0), torch.arange(9.0), indexing="ij")
    assert torch.allclose(uv[0, ..., 0], uu.double(), atol=1e-9)
    assert torch.allclose(uv[1, ..., 1], vv.double(), atol=1e-9)


def test_pixel_zero_is_top_left_centre():
    # The point on the optical axis projects to (cx, cy); a point at x = Z * (0 - cx) / f lands on u = 0.
    K = make_K(f=10, cx=3.5, cy=2.5)
    X = torch.tensor([[[-3.5 / 10 * 2, -2.5 / 10 * 2, 2.0]]], dtype=torch.float64)
    assert torch.allclose(project(X, K), torch.zeros(1, 1, 2, dtype=torch.float64), atol=1e-12)


def test_scale_intrinsics_matches_resize():
    # A bright dot at a projected point stays at the scaled projection after an area resize.
    H, W, s = 64, 96, 0.5
    K = make_K(f=80, cx=47.5, cy=31.5)
    X = torch.tensor([[[0.3, -0.2, 2.0]]], dtype=torch.float64)
    p = project(X, K)[0, 0]
    vv, uu = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = torch.exp(-((uu - p[0]) ** 2 + (vv - p[1]) ** 2) / (2 * 3.0**2))[None, None]
    small = F.interpolate(img, scale_factor=s, mode="area")[0, 0]
    vs, us = torch.meshgrid(torch.arange(H * s, dtype=torch.float64), torch.arange(W * s, dtype=torch.float64), indexing="ij")
    centroid = torch.stack([(small * us).sum(), (small * vs).sum()]) / small.sum()
    p_small = project(X, scale_intrinsics(K, s, s))[0, 0]
    assert torch.allclose(centroid, p_small, atol=1e-3)
    # The naive rule (cx * s) is off by a quarter pixel: the test can tell them apart.
    assert abs(float(K[0, 2] * s - centroid[0])) > 0.2


# ---------------------------------------------------------------------------------------------------- warp


def textured_plane_frame(T, K, H, W, normal, offset):
    """Render, exactly, what a camera with pose T sees of the plane n . X = d (reference coordinates).

    Ray-plane intersection per pixel; the texture is a smooth function of the point on the plane.
    Returns the image (1, 3, H, W) and z-depth (1, 1, H, W) in frame T's camera.
    """
    n = torch.tensor(normal, dtype=torch.float64)
    n = n / n.norm()
    vv, uu = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], torch.ones_like(uu)], -1)  # z = 1
    R, t = T[:3, :3], T[:3, 3]
    # X_ref = R^T (s * ray - t); solve n . X_ref = d for s, the z-depth in frame k.
    dirs = rays @ R  # R^T ray for each pixel
    origin = -(R.T @ t)
    s = (offset - origin @ n) / (dirs @ n)
    X = origin + s[..., None] * dirs
    a, b = X[..., 0], X[..., 1] * 0.8 + X[..., 2] * 0.6
    tex = torch.stack(
        [
            0.5 + 0.2 * torch.sin(9 * a + 2) + 0.15 * torch.cos(7 * b),
            0.5 + 0.2 * torch.sin(6 * a - 7 * b) + 0.1 * torch.cos(11 * b + 1),
            0.5 + 0.25 * torch.cos(8 * a + 5 * b),
        ]
    )
    return tex[None], s[None, None]


PLANE = dict(normal=(0.0, -0.25, -1.0), offset=-2.5)  # tilted: depth from about 2.1 m to 3.0 m
ASYMMETRIC_TRAJECTORY = [  # (u, v) per instant, reference (index 3) excluded
    ((0.004, -0.006, 0.002), (-0.030, 0.010, -0.020)),
    ((0.003, -0.004, 0.001), (-0.018, 0.007, -0.012)),
    ((0.001, -0.002, 0.001), (-0.008, 0.003, -0.005)),
    ((-0.002, 0.003, 0.000), (0.012, -0.002, 0.006)),
    ((-0.005, 0.005, -0.001), (0.025, -0.003, 0.010)),
    ((-0.009, 0.008, -0.003), (0.040, -0.005, 0.016)),
]


def plane_scene(H=48, W=64):
    K = make_K(f=70, cx=(W - 1) / 2, cy=(H - 1) / 2)
    poses = torch.stack([pose(u, v) for u, v in ASYMMETRIC_TRAJECTORY])
    ref, depth = textured_plane_frame(torch.eye(4, dtype=torch.float64), K, H, W, **PLANE)
    frames = [textured_plane_frame(T, K, H, W, **PLANE)[0] for T in poses]
    return K, poses, ref, depth, frames


def inner(x, m=8):
    return x[..., m:-m, m:-m]


def test_identity_pose_gives_identity_warp():
    img = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    depth = torch.rand(2, 1, 10, 12, dtype=torch.float64) + 0.5
    out, valid = warp(img, depth, torch.eye(4, dtype=torch.float64).expand(2, 4, 4), make_K(f=20, cx=5.5, cy=4.5))
    assert torch.allclose(out, img, atol=1e-12) and bool(valid.all())


def test_translation_moves_pixel_by_f_tx_over_z():
    # A point at depth Z seen from a camera whose coordinates moved by t_x shifts by f * t_x / Z pixels in u.
    f, Z, tx = 100.0, 2.0, 0.04  # expected shift: 2 pixels
    H, W = 20, 40
    img = torch.zeros(1, 1, H, W, dtype=torch.float64)
    img[..., 10, 15] = 1.0
    depth = torch.full((1, 1, H, W), Z, dtype=torch.float64)
    out, _ = warp(img, depth, pose(v=(tx, 0, 0))[None], make_K(f=f, cx=19.5, cy=9.5))
    assert out[0, 0, 10, 15 + 2] == pytest.approx(1.0, abs=1e-9)
    assert out[0, 0, 10, 15] == pytest.approx(0.0, abs=1e-9)


def test_rotation_about_y_moves_principal_point():
    # Rotating point coordinates by +theta about y sends the optical axis (0, 0, 1) to (sin, 0, cos):
    # what was at the principal point appears at u = cx + f tan(theta).
    f, theta = 100.0, math.atan(3 / 100.0)  # a 3-pixel shift
    H, W = 21, 41
    img = torch.zeros(1, 1, H, W, dtype=torch.float64)
    img[..., 10, 20] = 1.0
    depth = torch.full((1, 1, H, W), 3.0, dtype=torch.float64)
    out, _ = warp(img, depth, pose(u=(0, theta, 0))[None], make_K(f=f, cx=20.0, cy=10.0))
    assert out[0, 0, 10, 23] == pytest.approx(1.0, abs=1e-6)


def test_warp_reproduces_exact_render_of_tilted_plane():
    K, poses, ref, depth, frames = plane_scene()
    for T, truth in zip(poses, frames):
        out, valid = warp(ref, depth, T[None], K)
        assert bool(inner(valid).all())
        assert psnr(inner(out), inner(truth)) >= 40.0
    # With the inverse pose the same check fails clearly: the convention is pinned, not just self-consistent.
    worst = min(psnr(inner(warp(ref, depth, invert_pose(T)[None], K)[0]), inner(truth)) for T, truth in zip(poses, frames))
    assert worst < 30.0


def test_reblur_reproduces_mean_of_exact_frames():
    K, poses, ref, depth, frames = plane_scene()
    truth = torch.cat([*frames[:3], ref, *frames[3:]]).mean(0, keepdim=True)
    out, valid = reblur(ref, depth, poses[None], K, averaging="srgb", return_valid=True)
    assert bool(inner(valid).all())
    assert psnr(inner(out), inner(truth)) >= 40.0
    wrong = reblur(ref, depth, invert_pose(poses)[None], K, averaging="srgb")
    assert psnr(inner(wrong), inner(truth)) < psnr(inner(out), inner(truth)) - 10


def test_reblur_in_linear_light_matches_blur_frames():
    K, poses, ref, depth, frames = plane_scene()
    truth = blur_frames(torch.cat([*frames[:3], ref, *frames[3:]]), dim=0, averaging="linear")[None]
    out = reblur(ref, depth, poses[None], K, averaging="linear")
    assert psnr(inner(out), inner(truth)) >= 40.0


def test_reblur_with_subframes_matches_dense_exact_render():
    H, W = 48, 64
    K, poses, ref, depth, _ = plane_scene(H, W)
    dense = interpolate_trajectory(trajectory_with_reference(poses[None]), 4)[0]
    assert dense.shape == (25, 4, 4)
    assert torch.allclose(dense[::4], trajectory_with_reference(poses[None])[0], atol=1e-12)
    truth = torch.cat([textured_plane_frame(T, K, H, W, **PLANE)[0] for T in dense]).mean(0, keepdim=True)
    out = reblur(ref, depth, poses[None], K, subframes=4, averaging="srgb")
    assert psnr(inner(out), inner(truth)) >= 40.0


@pytest.mark.parametrize("chunk", [None, 48 * 64 * 5])
def test_reblur_at_given_pixels_returns_the_dense_values_there(monkeypatch, chunk):
    """A re-blur of some pixels (used to estimate a large image's re-blur error) is the dense one's values there, also
    when the instants are warped in groups; a depth step makes the fixed-point iteration do real work."""
    import worldfromblur.geometry as geometry

    H, W = 48, 64
    K, poses, ref, depth, _ = plane_scene(H, W)
    depth = depth.clone()
    depth[..., 10:30, 20:40] *= 0.5
    dense, valid = reblur(ref, depth, poses[None], K, subframes=4, return_valid=True)
    g = torch.Generator().manual_seed(0)
    pixels = torch.stack([torch.randint(0, W, (7, 9), generator=g), torch.randint(0, H, (7, 9), generator=g)], -1)
    if chunk:
        monkeypatch.setattr(geometry, "REBLUR_CHUNK_PIXELS", chunk)  # 5 instants at a time instead of all 25
    out, valid_p = reblur(ref, depth, poses[None], K, subframes=4, return_valid=True, pixels=pixels)
    assert out.shape == (1, 3, 7, 9)
    assert torch.allclose(out, dense[..., pixels[..., 1], pixels[..., 0]], atol=1e-12)
    assert torch.equal(valid_p, valid[..., pixels[..., 1], pixels[..., 0]])
    for bad, message in [(pixels.float(), "integer"), (pixels + W, "inside"), (pixels[0], "pixels must have shape")]:
        with pytest.raises(GeometryError, match=message):
            reblur(ref, depth, poses[None], K, pixels=bad)


def test_warp_frames_equals_one_border_warp_per_pose(monkeypatch):
    import worldfromblur.geometry as geometry

    K, poses, ref, depth, _ = plane_scene()
    depth = depth.clone()
    depth[..., 5:15, 10:30] *= 0.6
    traj = trajectory_with_reference(poses[None])
    one_by_one = torch.stack([warp(ref, depth, T[None], K, padding_mode="border")[0][0] for T in traj[0]])[None]
    assert torch.allclose(warp_frames(ref, depth, traj, K), one_by_one, atol=1e-12)
    monkeypatch.setattr(geometry, "REBLUR_CHUNK_PIXELS", ref.shape[-1] * ref.shape[-2] * 3)  # groups of 3 poses
    assert torch.allclose(warp_frames(ref, depth, traj, K), one_by_one, atol=1e-12)


def test_warp_of_several_poses_equals_one_warp_per_pose():
    K, poses, ref, depth, _ = plane_scene()
    depth = depth.clone()
    depth[..., 5:15, 10:30] *= 0.6  # a depth edge, so that some pixels are invalid
    images, valid = warp(ref, depth, poses[None], K)
    assert images.shape == (1, len(poses), *ref.shape[1:]) and valid.shape == (1, len(poses), 1, *ref.shape[2:])
    for m, T in enumerate(poses):
        image_m, valid_m = warp(ref, depth, T[None], K)
        assert torch.allclose(images[:, m], image_m, atol=1e-12) and torch.equal(valid[:, m], valid_m)
    assert not bool(valid.all())
    with pytest.raises(GeometryError, match=r"T must have shape \(B,4,4\)"):
        warp(ref, depth, poses[0], K)


def test_warp_marks_disocclusion_invalid():
    # A near square in front of a far wall: the wall behind the square is revealed when the camera moves.
    H, W = 30, 40
    depth = torch.full((1, 1, H, W), 4.0, dtype=torch.float64)
    depth[..., 10:20, 15:25] = 1.0
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    _, valid = warp(img, depth, pose(v=(0.1, 0, 0))[None], make_K(f=40, cx=19.5, cy=14.5))
    assert valid[..., 12:18, 2:38].min() == 0  # the revealed strip
    assert valid[..., 2:8, 5:35].min() == 1  # plain wall


def test_gradcheck_warp_and_reblur():
    g = torch.Generator().manual_seed(1)
    H, W = 5, 6
    img = torch.rand(1, 2, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    depth = (1.5 + 0.2 * torch.rand(1, 1, H, W, generator=g, dtype=torch.float64)).requires_grad_()
    K = make_K(f=6, cx=2.5, cy=2.0)
    u = torch.tensor([[0.01, -0.02, 0.015]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[0.03, 0.02, -0.01]], dtype=torch.float64, requires_grad=True)

    def f_warp(img, depth, u, v):
        return warp(img, depth, pose_from_uv(u, v), K, iterations=3)[0]

    assert torch.autograd.gradcheck(f_warp, (img, depth, u, v))

    def f_reblur(img, depth, u, v):
        poses = pose_from_uv(torch.cat([u, -u]), torch.cat([v, -0.5 * v]))[None]
        return reblur(img, depth, poses, K, iterations=3, subframes=2, averaging="linear")

    assert torch.autograd.gradcheck(f_reblur, (img.detach().clamp(0.1, 0.9).requires_grad_(), depth, u, v))


# ---------------------------------------------------------------------------------------------------- point cloud


def test_point_cloud_matches_backprojection_and_marks_holes():
    img = torch.rand(1, 3, 4, 5)
    depth = torch.full((1, 1, 4, 5), 2.0)
    depth[0, 0, 1, 2] = 0.0
    K = make_K(f=10, cx=2.0, cy=1.5, dtype=torch.float32)
    pts, cols, valid = point_cloud(img, depth, K)
    assert pts.shape == (1, 20, 3) and cols.shape == (1, 20, 3)
    assert not valid[0, 1 * 5 + 2] and int(valid.sum()) == 19
    assert torch.allclose(pts[0, 0], torch.tensor([-2.0 / 10 * 2, -1.5 / 10 * 2, 2.0]))
    assert torch.equal(cols[0, 7], img[0, :, 1, 2])


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image_ref=torch.rand(3, 8, 8)), "image_ref must have shape"),
        (dict(depth_ref=torch.ones(1, 8, 8)), "depth_ref must have shape"),
        (dict(depth_ref=torch.full((1, 1, 8, 8), float("nan"))), "depth_ref has non-finite"),
        (dict(depth_ref=torch.zeros(1, 1, 8, 8)), "depth_ref has values <= 0"),
        (dict(T=torch.eye(3)[None]), "T must have shape"),
        (dict(K=torch.zeros(3, 3)), "K is singular"),
        (dict(K=torch.eye(4)), "K must have shape"),
        (dict(K=torch.full((3, 3), float("inf"))), "K has non-finite"),
    ],
)
def test_bad_geometry_input_names_the_argument(change, message):
    args = dict(
        image_ref=torch.rand(1, 3, 8, 8),
        depth_ref=torch.ones(1, 1, 8, 8),
        T=torch.eye(4)[None],
        K=torch.tensor([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]]),
    )
    args.update(change)
    with pytest.raises(GeometryError, match=message):
        warp(**args)


def test_odd_number_of_poses_is_rejected():
    with pytest.raises(GeometryError, match="even number"):
        trajectory_with_reference(torch.eye(4).expand(1, 3, 4, 4))


def test_path_steps_of_a_sideways_move_are_focal_times_baseline_over_depth():
    """A camera moving sideways past a wall at depth Z moves every pixel f * dt / Z per step, dt each step's own
    baseline (the steps here are uneven); a pixel on a plane twice as near moves twice as far. Any other step length
    (the poses' differences taken twice, the flow's norm over the wrong axis) fails this."""
    f, Z = 100.0, 2.0
    depth = torch.full((1, 1, 8, 10), Z, dtype=torch.float64)
    depth[..., :4, :] = Z / 2  # the top half twice as near
    ts = torch.tensor([-0.02, -0.01, 0.0, 0.015, 0.03], dtype=torch.float64)  # uneven steps, reference in the middle
    T = torch.eye(4, dtype=torch.float64).repeat(1, 5, 1, 1)
    T[0, :, 0, 3] = ts
    steps = path_steps(depth, T, make_K(f)[None])
    assert steps.shape == (1, 4, 8, 10)
    want = f * ts.diff().abs() / Z
    torch.testing.assert_close(steps[0, :, 4:, :], want[:, None, None].expand(4, 4, 10))
    torch.testing.assert_close(steps[0, :, :4, :], 2 * want[:, None, None].expand(4, 4, 10))
    torch.testing.assert_close(steps.sum(1)[0, 5, 5], torch.tensor(f * 0.05 / Z, dtype=torch.float64))
