"""The losses (worldfromblur.losses): each checked by hand, and the time-reversal rule they share."""

import pytest
import torch

from worldfromblur.geometry import forward_flow, pose_from_uv, uv_from_pose
from worldfromblur.losses import (LossConfig, check_reversal, cycle_loss, deblur_loss, depth_loss, motion_loss,
                                  path_loss, reconstruction_loss)


def batch(B=2, H=12, W=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, 6, 3, generator=g) * 0.01
    v = torch.randn(B, 6, 3, generator=g) * 0.01
    K = torch.tensor([[W * 0.8, 0, (W - 1) / 2], [0, W * 0.8, (H - 1) / 2], [0, 0, 1]]).expand(B, 3, 3)
    return {"blurred": torch.rand(B, 3, H, W, generator=g), "depth": 1 + 3 * torch.rand(B, 1, H, W, generator=g),
            "poses": pose_from_uv(u, v), "K": K}


def test_reversal_invariant_motion_loss():
    b = batch()
    gt = b["poses"]
    u, v = uv_from_pose(gt)
    assert float(motion_loss(u, v, gt)[0]) < 1e-12
    # A prediction of the reversed trajectory explains the same blur: it costs nothing under "min" ...
    loss, details = motion_loss(u.flip(1), v.flip(1), gt)
    assert float(loss) < 1e-12 and float(details["reversed"]) == 1.0
    # ... and is penalised by the paper's ordered loss.
    assert float(motion_loss(u.flip(1), v.flip(1), gt, reversal="ordered")[0]) > 1e-5
    # A wrong trajectory costs under both.
    assert float(motion_loss(-u, -v, gt)[0]) > 1e-5
    # Per sample: one sample reversed, one not; hand-computed value for a shifted prediction.
    mixed_u = torch.stack([u[0].flip(0), u[1] + 0.01])
    loss, details = motion_loss(mixed_u, torch.stack([v[0].flip(0), v[1]]), gt)
    assert float(details["reversed"]) == 0.5
    assert float(details["L_u"]) == pytest.approx((18 * 0.01**2) / 2, rel=1e-4)


def test_pixel_losses_by_hand():
    a, b = torch.zeros(2, 3, 4, 5), torch.full((2, 3, 4, 5), 0.5)
    assert float(deblur_loss(a, b)[0]) == pytest.approx(60 * 0.25)
    gt = torch.full((1, 1, 2, 2), 2.0)
    gt[0, 0, 0, 0] = 0  # no measurement: ignored
    assert float(depth_loss(torch.ones(1, 1, 2, 2), gt)[0]) == pytest.approx(3.0)


def test_deblur_edge_term_by_hand():
    sharp = torch.zeros(1, 1, 3, 4)
    out = sharp.clone()
    out[0, 0, 1, 1] = 1.0  # one bright pixel: 1 of squared error, and 4 differences of 1 around it
    assert float(deblur_loss(out, sharp)[0]) == pytest.approx(1.0)
    loss, details = deblur_loss(out, sharp, edges=0.5)
    assert float(details["L_edges"]) == pytest.approx(4.0) and float(loss) == pytest.approx(1.0 + 0.5 * 4.0)
    # A constant offset has no edge error; a difference counts only where both of its pixels are valid.
    assert float(deblur_loss(sharp + 0.5, sharp, edges=1.0)[1]["L_edges"]) == 0.0
    valid = torch.ones(1, 1, 3, 4)
    valid[0, 0, 1, 2] = 0  # the pixel right of the bright one: drops its horizontal difference on both sides
    assert float(deblur_loss(out, sharp, valid, edges=1.0)[1]["L_edges"]) == pytest.approx(3.0)
    # The term pulls a smoothed edge back towards the step it should be.
    step = torch.zeros(1, 1, 4, 8)
    step[..., 4:] = 1.0
    soft = step.clone()
    soft[..., 3], soft[..., 4] = 0.25, 0.75
    soft.requires_grad_(True)
    deblur_loss(soft, step, edges=1.0)[0].backward()
    assert (soft.grad[..., 3] > 0).all() and (soft.grad[..., 4] < 0).all()
    with pytest.raises(ValueError, match="deblur_edges must be >= 0"):
        deblur_loss(out, sharp, edges=-1.0)


def test_log_l1_depth_loss_by_hand():
    gt = torch.full((1, 1, 2, 2), 2.0)
    gt[0, 0, 1, 1] = 0  # no measurement: ignored
    pred = torch.full((1, 1, 2, 2), 2.0 * torch.e)
    assert float(depth_loss(pred, gt, kind="log_l1")[0]) == pytest.approx(3.0)  # |log(2e) - log 2| = 1, 3 pixels
    with pytest.raises(ValueError, match="l2"):
        depth_loss(pred, gt, kind="l1")


def test_path_loss_is_zero_error_at_the_truth_and_weighs_by_its_scale():
    b = batch(B=1)
    gt, _ = forward_flow(b["depth"], b["poses"], b["K"])  # (1, 6, 2, H, W)
    zero_scale = torch.zeros(1, 1, *gt.shape[-2:])
    L, d = path_loss(gt, zero_scale, b["poses"], b["depth"], b["K"])
    assert float(d["path_px"]) < 1e-5 and float(L) == pytest.approx(0.0, abs=1e-3)
    off = gt + 1.0  # every coordinate 1 px off: |d - g| summed over 6 instants x 2 coordinates = 12 per pixel
    L, d = path_loss(off, zero_scale, b["poses"], b["depth"], b["K"], reversal="ordered")
    assert float(d["path_px"]) == pytest.approx(1.0, abs=1e-4)
    assert float(L) == pytest.approx(12 * gt.shape[-2] * gt.shape[-1], rel=1e-4)
    # A larger scale b costs 4n log b per pixel and divides the error by b: at b = e, 12 / e + 12.
    L_e, _ = path_loss(off, zero_scale + 1.0, b["poses"], b["depth"], b["K"], reversal="ordered")
    assert float(L_e) == pytest.approx((12 / torch.e + 12) * gt.shape[-2] * gt.shape[-1], rel=1e-4)


def test_cycle_loss_is_the_papers_sum():
    b = batch()
    u, v = uv_from_pose(b["poses"])
    reblurred = b["blurred"] + 0.1
    out = {"u": u + 0.01, "v": v, "reblurred": reblurred, "valid": torch.ones_like(b["blurred"][:, :1])}
    total, details = cycle_loss(out, b, alpha=0.5)
    Lm, _ = motion_loss(out["u"], out["v"], b["poses"])
    Lr, _ = reconstruction_loss(reblurred, b["blurred"], out["valid"])
    assert float(total) == pytest.approx(float(Lm + 2 * 0.5 * Lr), rel=1e-6)
    assert float(Lr) == pytest.approx(0.01 * 3 * 12 * 16, rel=1e-4)
    assert float(cycle_loss(out, b)[0]) == pytest.approx(float(Lm + 2 * LossConfig.alpha * Lr), rel=1e-6)


def test_reversal_has_two_names_only():
    check_reversal("min")
    check_reversal("ordered")
    with pytest.raises(ValueError, match="'min' or 'ordered'"):
        check_reversal(True)
    b = batch()
    u, v = uv_from_pose(b["poses"])
    with pytest.raises(ValueError):
        motion_loss(u, v, b["poses"], reversal="both")
