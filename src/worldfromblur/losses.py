"""The paper's losses (Eq. 3, 4, 5, 7, 8), and a motion loss that respects the time reversal ambiguity.

Reductions follow the equations: each term is the squared L2 norm of one sample's error (over its 2n poses, or over
its pixels), averaged over the N samples of the batch. With that reading the paper's alpha = 1e-3 balances a sum
over thousands of pixels (Eq. 7) against a sum over 2n x 3 pose parameters (Eq. 3). Pixel terms are masked (a pixel
with no ground-truth depth, or with no source in a warp, adds nothing).

Every loss returns ``(total, details)``: a scalar tensor to optimise and a dict of detached scalars to log.

Time reversal: a blurred image is the same whichever way time runs, so the instants 0 ... 2n and 2n ... 0 give the
same image; the stored pose list is then read backwards. The paper's ordered loss penalises a network for choosing
the other, equally valid, order. :func:`motion_loss` with ``reversal="min"`` (the default) takes, per sample, the
better of the two orders; ``reversal="ordered"`` is the paper's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .geometry import forward_flow, uv_from_pose

Reversal = Literal["min", "ordered"]
"""How a pose list is compared with its ground truth: "min" takes, per sample, the better of the two time orders;
"ordered" compares in the stored order only (the paper's)."""


@dataclass
class LossConfig:
    """The loss options of a training run (the ``loss`` section of a training config)."""

    alpha: float = 1e-3
    """Weight of the cycle's reconstruction loss (the paper's Eq. 8)."""
    reversal: Reversal = "min"
    """Motion loss: "min" takes the better of the two time orders per sample; "ordered" is the paper's."""
    depth: Literal["l2", "log_l1"] = "l2"
    """Depth loss: "l2" (the paper's Eq. 5, squared metres) or "log_l1" (absolute error of log depth, which weighs
    near and far alike, as the relative metrics do)."""
    reference: Literal["sharp", "deblurred"] = "sharp"
    """The frame the depth and motion modules read in stage 1: "sharp", the clean reference frame (the paper's
    stage 1), or "deblurred", the deblurring module's output for the blurred input (without gradient), which is what
    they read at inference. A module trained on clean frames meets a different, still partly blurred frame there,
    and a new deblurring module changes it again."""
    deblur_edges: float = 0.0
    """Weight of an edge term added to the deblurring loss (Eq. 4): the squared error of the horizontal and vertical
    differences of neighbouring pixels, deblurred against sharp, summed per sample like Eq. 4. The squared error of
    the image alone lets a module smooth fine detail it is unsure of (its frame comes out softer than the truth);
    the differences weigh the finest detail up to eight times more. 0 (the default) is the paper's loss."""


def check_reversal(reversal: str) -> None:
    if reversal not in ("min", "ordered"):
        raise ValueError(f"reversal must be 'min' or 'ordered', got {reversal!r}")


def _per_sample_sq(err: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared L2 norm of each sample's error, (B, ...) -> (B,), accumulated in float32 (also under autocast)."""
    sq = err.float().pow(2)
    if mask is not None:
        sq = sq * mask
    return sq.flatten(1).sum(1)


def motion_loss(
    u_pred: torch.Tensor, v_pred: torch.Tensor, poses_gt: torch.Tensor, reversal: Reversal = "min"
) -> tuple[torch.Tensor, dict]:
    """Eq. 3: L_u and L_v between predicted (u, v) (B, 2n, 3) and ground-truth poses (B, 2n, 4, 4).

    With ``reversal="min"``, each sample is compared with its ground truth in time order and reversed, and the order
    with the smaller L_u + L_v is used for both terms. Returns ``(L_u + L_v, details)``; details hold ``L_u``,
    ``L_v`` and ``reversed`` (the fraction of samples matched in reversed order).
    """
    check_reversal(reversal)
    u_gt, v_gt = uv_from_pose(poses_gt)
    lu, lv = _per_sample_sq(u_pred - u_gt), _per_sample_sq(v_pred - v_gt)
    flipped = torch.zeros_like(lu, dtype=torch.bool)
    if reversal == "min":
        lu_r, lv_r = _per_sample_sq(u_pred - u_gt.flip(1)), _per_sample_sq(v_pred - v_gt.flip(1))
        flipped = (lu_r + lv_r) < (lu + lv)
        lu, lv = torch.where(flipped, lu_r, lu), torch.where(flipped, lv_r, lv)
    Lu, Lv = lu.mean(), lv.mean()
    return Lu + Lv, {"L_u": Lu.detach(), "L_v": Lv.detach(), "reversed": flipped.float().mean().detach()}


def path_loss(displacement: torch.Tensor, log_scale: torch.Tensor, poses_gt: torch.Tensor, depth_gt: torch.Tensor,
              K: torch.Tensor, valid: torch.Tensor | None = None, reversal: Reversal = "min") -> tuple[torch.Tensor, dict]:
    """The per-pixel motion head's loss: the Laplace negative log-likelihood of each reference pixel's predicted
    displacements (B, 2n, 2, H, W) against those the ground-truth poses and depth give, with a per-pixel log scale
    (B, 1, H, W): ``sum_k |d_k - g_k| / b + 4n log b``, summed over the pixels with depth, averaged over samples.

    With ``reversal="min"`` each sample is scored against its ground truth in time order and reversed, and the
    better order counts (as :func:`motion_loss`). Details: ``L_path`` and ``path_px`` (mean absolute error per
    coordinate, pixels, of the chosen order) and ``reversed``.
    """
    check_reversal(reversal)
    mask = ((depth_gt > 0) if valid is None else valid).float()
    with torch.autocast(displacement.device.type, enabled=False):
        gt, _ = forward_flow(depth_gt.float().clamp_min(1e-3), poses_gt.float(), K.float())  # (B, 2n, 2, H, W)
    d, s = displacement.float(), log_scale.float()

    def per_sample(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        err = (d - target).abs().sum(dim=(1, 2))[:, None]  # (B, 1, H, W)
        nll = (err * torch.exp(-s) + d.shape[1] * 2 * s) * mask
        return nll.flatten(1).sum(1), (err * mask).flatten(1).sum(1)

    nll, err = per_sample(gt)
    flipped = torch.zeros_like(nll, dtype=torch.bool)
    if reversal == "min":
        nll_r, err_r = per_sample(gt.flip(1))
        flipped = nll_r < nll
        nll, err = torch.where(flipped, nll_r, nll), torch.where(flipped, err_r, err)
    L = nll.mean()
    px = err.sum() / (mask.sum() * d.shape[1] * 2).clamp_min(1)
    return L, {"L_path": L.detach(), "path_px": px.detach(), "reversed": flipped.float().mean().detach()}


def deblur_loss(deblurred: torch.Tensor, sharp: torch.Tensor, valid: torch.Tensor | None = None,
                edges: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Eq. 4: squared error between the deblurred image and the sharp reference frame (over ``valid`` pixels if given:
    the stream marks those whose blur it had to invent), plus ``edges`` times the squared error of the differences
    of neighbouring pixels (a difference counts where both of its pixels are valid; see ``LossConfig.deblur_edges``)."""
    if edges < 0:
        raise ValueError(f"loss.deblur_edges must be >= 0, got {edges}")
    mask = None if valid is None else valid.to(deblurred.dtype)
    err = deblurred - sharp
    L = _per_sample_sq(err, mask).mean()
    details = {"L_b": L.detach()}
    if edges > 0:
        err_x, err_y = err.diff(dim=-1), err.diff(dim=-2)  # differences of horizontal and vertical neighbours
        mask_x = mask_y = None
        if mask is not None:
            mask_x, mask_y = mask[..., :, 1:] * mask[..., :, :-1], mask[..., 1:, :] * mask[..., :-1, :]
        E = (_per_sample_sq(err_x, mask_x) + _per_sample_sq(err_y, mask_y)).mean()
        details["L_edges"] = E.detach()
        L = L + edges * E
    return L, details


def depth_loss(depth: torch.Tensor, depth_gt: torch.Tensor, valid: torch.Tensor | None = None,
               kind: str = "l2") -> tuple[torch.Tensor, dict]:
    """Eq. 5: squared depth error (metres), over pixels with ground truth (``depth_gt > 0`` unless ``valid`` given).

    ``kind="log_l1"`` sums ``|log depth - log depth_gt|`` instead: a relative error, like the metrics (Abs Rel, the
    δ thresholds) by which depth is judged, where the squared error in metres lets far pixels dominate.
    """
    mask = (depth_gt > 0) if valid is None else valid
    if kind == "log_l1":
        err = (depth.float().clamp_min(1e-3).log() - depth_gt.float().clamp_min(1e-3).log()).abs() * mask
        L = err.flatten(1).sum(1).mean()
    elif kind == "l2":
        L = _per_sample_sq(depth - depth_gt, mask.to(depth.dtype)).mean()
    else:
        raise ValueError(f"kind must be 'l2' or 'log_l1', got {kind!r}")
    return L, {"L_d": L.detach()}


def reconstruction_loss(reblurred: torch.Tensor, blurred: torch.Tensor, valid: torch.Tensor | None = None):
    """Eq. 7: squared error between the re-blurred and the input image, where the warps had a source."""
    L = _per_sample_sq(reblurred - blurred, None if valid is None else valid.to(blurred.dtype)).mean()
    return L, {"L_r": L.detach()}


def cycle_loss(outputs: dict, batch: dict, alpha: float = LossConfig.alpha, reversal: Reversal = "min") -> tuple[torch.Tensor, dict]:
    """Eq. 8: L_u + L_v + 2 alpha L_r (the paper's two objectives L_u + alpha L_r and L_v + alpha L_r, summed).

    Only motion is supervised; the blurred input supervises everything else through the cycle.
    """
    Lm, details = motion_loss(outputs["u"], outputs["v"], batch["poses"], reversal)
    Lr, d = reconstruction_loss(outputs["reblurred"], batch["blurred"], outputs["valid"])
    details.update(d)
    total = Lm + 2 * alpha * Lr
    details["total"] = total.detach()
    return total, details
