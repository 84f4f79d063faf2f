"""Metrics of the paper's tables, as pure functions of arrays or tensors.

* :func:`depth_metrics` — Table 3: Abs Rel, Sq Rel, RMSE, RMSE log and the δ < 1.25^k accuracies (Eigen et al.
  2014's definitions), per image over valid ground truth, then averaged over images; with ``align=True`` each
  predicted map is first scaled to its ground truth's median (the error of the depth map's shape alone), and the
  scale error that removed is reported too.
* :func:`image_metrics` — Table 2: PSNR (data range 1; each image's counted at most :data:`PSNR_CAP_DB`) and SSIM
  (Wang et al. 2004: Gaussian window σ = 1.5 truncated at 3.5σ, i.e. 11 × 11, K1 = 0.01, K2 = 0.03, population
  covariances, a 5-pixel border left out), computed like scikit-image's ``structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
* :func:`edge_energies` — how much fine detail an image keeps against its truth: the energy of the differences of
  neighbouring pixels, image over truth (1: as much as the truth; below 1 softer, as a blurred or smoothed frame;
  above 1 noise, ringing or over-sharpening). PSNR, dominated by the flat parts of an image, barely sees this.
* :func:`motion_errors` — Table 1: mean absolute translation error per axis in centimetres, and rotation error per
  axis in degrees from the rotation vector of the relative rotation ``R_pred R_gt^T`` (pitch about x, yaw about y,
  roll about z), over all 2n poses of all samples; with ``reversal="min"`` each sample is matched to its ground
  truth in time order or reversed, whichever is closer, since a blurred image cannot tell them apart.
"""

from __future__ import annotations


import numpy as np
import torch

from ..geometry import uv_from_pose
from ..imaging import as_float64 as _np, psnr
from ..losses import Reversal, check_reversal


def _images(x: np.ndarray) -> np.ndarray:
    """(H, W) or (B, 1, H, W) or (B, H, W) -> (B, H, W)."""
    if x.ndim == 2:
        return x[None]
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"depth must have one channel, got shape {x.shape}")
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(f"depth must be (H, W), (B, H, W) or (B, 1, H, W), got shape {x.shape}")


DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def depth_metrics(pred, gt, mask=None, min_depth: float = 1e-3, max_depth: float = 10.0,
                  align: bool = False) -> dict[str, float]:
    """Depth errors and accuracies (metres), per image over ``min_depth < gt < max_depth`` (and ``mask``), averaged
    over images. Predictions are clipped to [min_depth, max_depth]. Images without valid pixels are skipped.

    ``align``: first multiply each predicted map by median(gt) / median(pred) over its valid pixels, as is done for
    models that cannot know the metric scale (Zhou et al. 2017, monodepth2): what is left is the error of the map's
    shape. The result then also holds ``scale_log``, the mean over images of |log(median(pred) / median(gt))|, the
    scale error that the alignment removed (0.1 is about 10 %), and ``scale_ratio``, its direction: the geometric
    mean over images of median(pred) / median(gt) (below 1: the model reads the scenes as nearer than they are).

    Example:
        >>> m = depth_metrics(np.full((2, 2), 2.0), np.full((2, 2), 1.0))
        >>> m["abs_rel"], m["rmse"], m["a3"]
        (1.0, 1.0, 0.0)
        >>> m = depth_metrics(np.array([[2.0, 4.0]]), np.array([[1.0, 2.0]]), align=True)
        >>> m["abs_rel"], round(m["scale_log"], 4), m["scale_ratio"]
        (0.0, 0.6931, 2.0)
    """
    p, g = _images(_np(pred)), _images(_np(gt))
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    valid = np.isfinite(g) & (g > min_depth) & (g < max_depth)
    if mask is not None:
        valid &= _images(_np(mask)) > 0
    rows = []
    for pi, gi, vi in zip(p, g, valid):
        if not vi.any():
            continue
        pv, gv = np.clip(pi[vi], min_depth, max_depth), gi[vi]
        scale = []
        if align:
            s = np.median(gv) / np.median(pv)
            pv, scale = np.clip(pv * s, min_depth, max_depth), [abs(np.log(s)), -np.log(s)]
        ratio = np.maximum(pv / gv, gv / pv)
        rows.append([
            np.mean(np.abs(pv - gv) / gv),
            np.mean((pv - gv) ** 2 / gv),
            np.sqrt(np.mean((pv - gv) ** 2)),
            np.sqrt(np.mean((np.log(pv) - np.log(gv)) ** 2)),
            np.mean(ratio < 1.25), np.mean(ratio < 1.25**2), np.mean(ratio < 1.25**3), *scale,
        ])
    if not rows:
        raise ValueError("no image has valid ground-truth depth in range")
    keys = DEPTH_KEYS + (("scale_log", "scale_ratio") if align else ())
    out = dict(zip(keys, (float(v) for v in np.mean(rows, axis=0))))
    if align:
        out["scale_ratio"] = float(np.exp(out["scale_ratio"]))  # the mean log ratio, as a ratio
    return out


def _gaussian_filter(x: np.ndarray, sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    """Separable Gaussian filter over the last two axes, mirrored at the edges (scipy.ndimage's 'reflect')."""
    r = int(truncate * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(0, 0)] * (x.ndim - 2)
    y = np.pad(x, pad + [(r, r), (0, 0)], mode="symmetric")
    y = sum(w * y[..., i : i + x.shape[-2], :] for i, w in enumerate(k))
    y = np.pad(y, pad + [(0, 0), (r, r)], mode="symmetric")
    return sum(w * y[..., i : i + x.shape[-1]] for i, w in enumerate(k))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (C, H, W) images in [0, 1], averaged over channels."""
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a = _gaussian_filter(a * a) - mu_a**2
    var_b = _gaussian_filter(b * b) - mu_b**2
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = 5  # (window 11 - 1) / 2: the border where the window leaves the image
    return float(s[..., pad:-pad, pad:-pad].mean())


PSNR_CAP_DB = 60.0
"""The most one image's PSNR counts in a mean: an image identical to its truth (a still exposure read without noise)
has an infinite PSNR and would make the mean infinite; 60 dB is an RMS error of a quarter of one 8-bit level."""


def _image_pairs(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _np(pred), _np(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    if p.ndim == 3:
        p, g = p[None], g[None]
    if p.ndim != 4:
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {p.shape}")
    return p, g


def image_psnrs(pred, gt) -> list[float]:
    """PSNR (dB, data range 1) of each image of (C, H, W) or (B, C, H, W) batches, at most :data:`PSNR_CAP_DB`.

    Example:
        >>> image_psnrs(np.zeros((2, 3, 4, 4)), np.full((2, 3, 4, 4), 0.1))
        [20.0, 20.0]
    """
    p, g = _image_pairs(pred, gt)
    return [min(psnr(pi, gi), PSNR_CAP_DB) for pi, gi in zip(p, g)]


def image_metrics(pred, gt) -> dict[str, float]:
    """PSNR (dB, data range 1; :func:`image_psnrs`) and SSIM of images in [0, 1], (C, H, W) or (B, C, H, W), averaged
    over images.

    Example:
        >>> x = np.random.default_rng(0).random((3, 16, 16))
        >>> image_metrics(x, x)["ssim"]
        1.0
    """
    p, g = _image_pairs(pred, gt)
    if min(p.shape[-2:]) < 11:
        raise ValueError(f"SSIM's 11 x 11 window needs images of at least 11 x 11 pixels, got {p.shape[-1]} x {p.shape[-2]}")
    ssims = [_ssim(pi, gi) for pi, gi in zip(p, g)]
    return {"psnr": float(np.mean(image_psnrs(p, g))), "ssim": float(np.mean(ssims))}


def edge_energies(pred, gt) -> list[float]:
    """Edge energy of each image of (C, H, W) or (B, C, H, W) batches against its truth: the sum of squared
    differences of horizontally and vertically neighbouring pixels of ``pred`` over the same sum of ``gt``.

    Example:
        >>> x = np.zeros((1, 4, 4)); x[:, :, 2:] = 1.0
        >>> edge_energies(x / 2, x)
        [0.25]
    """
    p, g = _image_pairs(pred, gt)

    def energy(x: np.ndarray) -> np.ndarray:
        return (np.diff(x, axis=-1) ** 2).sum(axis=(1, 2, 3)) + (np.diff(x, axis=-2) ** 2).sum(axis=(1, 2, 3))

    truth = energy(g)
    if (truth <= 0).any():
        raise ValueError("edge energy needs a truth with some detail; got a constant image")
    return [float(v) for v in energy(p) / truth]


MOTION_KEYS = ("tx", "ty", "tz", "yaw", "pitch", "roll")


def motion_errors(pred_poses, gt_poses, reversal: Reversal = "ordered") -> dict[str, float]:
    """Mean absolute per-axis errors of (B, 2n, 4, 4) poses: tx, ty, tz in cm; pitch (x), yaw (y), roll (z) in degrees.

    Example:
        >>> gt = torch.eye(4).repeat(1, 2, 1, 1)
        >>> pred = gt.clone(); pred[0, :, 0, 3] = 0.03
        >>> round(motion_errors(pred, gt)["tx"], 6), motion_errors(pred, gt)["yaw"]
        (3.0, 0.0)
    """
    P = torch.as_tensor(_np(pred_poses))
    G = torch.as_tensor(_np(gt_poses))
    if P.shape != G.shape or P.dim() != 4 or P.shape[-2:] != (4, 4):
        raise ValueError(f"poses must both be (B, 2n, 4, 4), got {tuple(P.shape)} and {tuple(G.shape)}")

    def errors(Gs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        R_err = P[..., :3, :3] @ Gs[..., :3, :3].transpose(-1, -2)
        rel = torch.eye(4, dtype=P.dtype).repeat(*P.shape[:2], 1, 1)
        rel[..., :3, :3] = R_err
        rot, _ = uv_from_pose(rel)
        return (P[..., :3, 3] - Gs[..., :3, 3]).abs() * 100, rot.abs().rad2deg()  # (B, 2n, 3) each

    check_reversal(reversal)
    t_err, r_err = errors(G)
    if reversal == "min":
        t_rev, r_rev = errors(G.flip(1))
        use = (t_rev.sum((1, 2)) + r_rev.sum((1, 2))) < (t_err.sum((1, 2)) + r_err.sum((1, 2)))
        t_err = torch.where(use[:, None, None], t_rev, t_err)
        r_err = torch.where(use[:, None, None], r_rev, r_err)
    t, r = t_err.mean((0, 1)), r_err.mean((0, 1))
    return {"tx": float(t[0]), "ty": float(t[1]), "tz": float(t[2]),
            "pitch": float(r[0]), "yaw": float(r[1]), "roll": float(r[2])}
