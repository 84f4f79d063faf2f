"""The pose solve from per-pixel paths: exact data, outliers, confidence, degeneracy, gradients."""

from __future__ import annotations

import pytest
import torch

from worldfromblur.geometry import pixel_grid, forward_flow, pose_from_uv
from worldfromblur.pose_solve import MIN_ROTATION_CONDITION, solve_poses

B, H, W = 2, 48, 64


@pytest.fixture(scope="module")
def scene():
    torch.manual_seed(0)
    K = torch.tensor([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]], dtype=torch.float64).expand(B, 3, 3).clone()
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    room = (1.5 + 2.0 * xx / W + 0.5 * torch.sin(yy / 5.0)).double()[None, None].expand(B, 1, H, W).clone()
    u = torch.randn(B, 6, 3, dtype=torch.float64) * 0.01  # about half a degree per instant
    v = torch.randn(B, 6, 3, dtype=torch.float64) * 0.01
    return K, room, u, v


def paths_of(depth, u, v, K):
    """Where every reference pixel is at each instant: the geometry module's forward flow plus the pixel grid."""
    flow, _ = forward_flow(depth, pose_from_uv(u, v), K)
    return flow + pixel_grid(H, W, depth)[0].permute(2, 0, 1)[None, None]


@pytest.mark.parametrize("stride", [1, 4])
def test_exact_paths_give_the_poses_back(scene, stride):
    K, room, u, v = scene
    sol = solve_poses(paths_of(room, u, v, K), room, K, stride=stride)
    assert (sol.u - u).abs().max() < 1e-4 and (sol.v - v).abs().max() < 1e-4
    assert (sol.u - u).abs().max() < 1e-12  # in float64, to rounding
    assert sol.residual_px.max() < 1e-9 and not sol.degenerate.any()
    assert torch.allclose(sol.poses, pose_from_uv(u, v), atol=1e-12)


def test_outliers_are_down_weighted_and_confidence_removes_them(scene):
    K, room, u, v = scene
    paths = paths_of(room, u, v, K)
    bad = torch.rand(B, 1, 1, H, W, generator=torch.Generator().manual_seed(0)) < 0.1
    corrupted = torch.where(bad, paths + 15.0, paths)  # a tenth of the paths 21 px off
    plain = solve_poses(corrupted, room, K, huber_px=1e9)
    robust = solve_poses(corrupted, room, K)
    err = lambda s: float((s.u - u).abs().max() + (s.v - v).abs().max())  # noqa: E731
    assert err(robust) < 0.1 * err(plain)
    masked = solve_poses(corrupted, room, K, confidence=(~bad[:, 0]).double())
    assert err(masked) < 1e-10


def test_a_flat_scene_through_a_narrow_lens_is_flagged(scene):
    """A plane facing the camera: rotation about y and translation along x (and x / y) move its pixels almost
    alike, told apart only by the field of view. Through a 56-degree lens the solve tells them apart (the whole
    motion's condition is low, the rotation's is not); through a 7-degree one it cannot, with or without the
    translation prior, and flags the poses: the rotation it returns is not determined by the data."""
    K, room, u, v = scene
    plane = torch.full((B, 1, H, W), 2.0, dtype=torch.float64)
    flat = solve_poses(paths_of(plane, u, v, K), plane, K)
    rich = solve_poses(paths_of(room, u, v, K), room, K)
    assert flat.condition.max() < 0.5 * rich.condition.min()
    assert not flat.degenerate.any() and not rich.degenerate.any()
    narrow = K.clone()
    narrow[:, 0, 0] = narrow[:, 1, 1] = 500.0
    for prior in (0.0, 0.3):
        sol = solve_poses(paths_of(plane, u, v, narrow), plane, narrow, translation_prior=prior)
        assert sol.degenerate.all() and (sol.rotation_condition < MIN_ROTATION_CONDITION).all()
    assert (rich.rotation_condition > 5 * MIN_ROTATION_CONDITION).all()
    # With the same noise in pixels, the flagged plane's rotation comes out worse, in pixels of motion (f times the
    # angle), than the same plane's through the wide lens: the flag means something.
    g = torch.Generator().manual_seed(1)
    noise = 0.3 * torch.randn(B, 6, 2, H, W, generator=g, dtype=torch.float64)
    wide = solve_poses(paths_of(plane, u, v, K) + noise, plane, K, translation_prior=0.3)
    tele = solve_poses(paths_of(plane, u, v, narrow) + noise, plane, narrow, translation_prior=0.3)
    assert not wide.degenerate.any() and tele.degenerate.all()
    assert 500 * (tele.u - u).abs().max() > 3 * 60 * (wide.u - u).abs().max()


def test_the_solve_is_differentiable(scene):
    K, room, u, v = scene
    paths = paths_of(room, u, v, K).float().requires_grad_(True)
    depth = room.float().requires_grad_(True)
    confidence = torch.ones(B, 1, H, W, requires_grad=True)
    sol = solve_poses(paths, depth, K.float(), confidence=confidence, iterations=4, stride=2)
    (sol.u.sum() + sol.v.sum()).backward()
    for x in (paths, depth):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert confidence.grad is not None and torch.isfinite(confidence.grad).all()


def test_the_translation_prior_keeps_exact_rotations_and_shrinks_only_translation(scene):
    """The prior's mode is no translation: a purely rotating camera comes back exactly under any prior weight, and
    a translating one comes back with its translation shrunk the more the heavier the prior, never grown."""
    K, room, u, v = scene
    still = torch.zeros_like(v)
    sol = solve_poses(paths_of(room, u, still, K), room, K, translation_prior=1.0)
    assert (sol.u - u).abs().max() < 1e-10 and sol.v.abs().max() < 1e-10
    norms = [solve_poses(paths_of(room, u, v, K), room, K, translation_prior=w).v.norm(dim=-1) for w in (0, 0.3, 3)]
    torch.testing.assert_close(norms[0], v.norm(dim=-1), atol=1e-10, rtol=0)
    assert (norms[1] < norms[0]).all() and (norms[2] < norms[1]).all()


def test_the_translation_prior_stops_noise_from_becoming_translation(scene):
    """Paths with errors no rigid motion explains, of a rotating camera on a plane (where translation and rotation
    trade off): plain least squares turns the noise into translation, the prior keeps it out and the rotation
    closer to the truth."""
    K, _, u, _ = scene
    plane = torch.full((B, 1, H, W), 2.0, dtype=torch.float64)
    still = torch.zeros_like(u)
    g = torch.Generator().manual_seed(2)
    smooth = torch.nn.functional.interpolate(torch.randn(B * 6, 2, 6, 8, generator=g, dtype=torch.float64),
                                             size=(H, W), mode="bilinear", align_corners=False)
    paths = paths_of(plane, u, still, K) + 0.5 * smooth.reshape(B, 6, 2, H, W)  # correlated, half-pixel errors
    plain = solve_poses(paths, plane, K)
    prior = solve_poses(paths, plane, K, translation_prior=0.3)
    assert prior.v.abs().mean() < 0.5 * plain.v.abs().mean()
    assert (prior.u - u).abs().mean() < (plain.u - u).abs().mean()


def test_non_finite_input_gives_flagged_non_finite_poses_not_an_error(scene):
    """A broken network (NaN depth) must reach the caller's finiteness check, not stop inside the solve."""
    K, room, u, v = scene
    depth = room.clone()
    depth[0, 0, 5, 5] = float("nan")
    sol = solve_poses(paths_of(room, u, v, K), depth, K)
    assert not torch.isfinite(sol.u[0]).all() and sol.degenerate[0].all()
    assert torch.isfinite(sol.u[1]).all() and not sol.degenerate[1].any()
