"""Rotation axes on real camera blur from high-frame-rate video: the truth measured from the sharp frames themselves.

    python -m experiments.video_rotation FRAMES_DIR [--every 20] [--lengths 13] [--min-deg 0.3] [--steps 15]

FRAMES_DIR holds consecutive frames of a hand-held high-frame-rate video (the 240 fps GoPro street sequence of
``jeffreywolberg/deblurring_dataset_generator``, ``data/level3/videos/GOPR0477_11_00``: a scene no training pool
contains). Every ``--every`` frames, the N frames of a window are averaged in linear light into one blurred image
(:mod:`benchmarks.video`). The camera's rotation over the window is measured from its first and last sharp frames:
the rotation R whose homography ``K R K^-1`` best aligns them (Huber-weighted grey residuals, Levenberg-Marquardt,
coarse to fine up to 320 pixels wide), with ``K`` the one ``wfb reconstruct`` assumes for a photo without EXIF (63 degrees across), so
that truth and reconstruction describe the same pixel motion. A street is far away and a hand-held camera moves a
few centimetres in 50 ms, so the motion is nearly a rotation; the alignment's residual is reported beside it.
Windows whose measured rotation is below ``--min-deg`` are skipped (the axis of no motion means nothing).

Each blurred image is reconstructed by ``wfb reconstruct``'s engine (outputs kept near the working size) with the
shipped model,
without refinement and with the default refinement, and scored by the angle between the measured and the
reconstructed rotation axes up to sign (a blurred image is the same whichever way time runs; random axes score 57
degrees median), as :mod:`experiments.real_motion` does for motion-capture poses.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import machine, table
from benchmarks.video import read, video_arguments, video_frames, windows
from experiments.real_motion import axis_angle, engines_for, score_axes
from worldfromblur.geometry import pose_from_uv, scale_intrinsics
from worldfromblur.imaging import blur_frames
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.fullres import resize
from worldfromblur.reconstruct.photo import Photo, intrinsics_for
from worldfromblur.reconstruct.pipeline import working_size


def grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def warp_by_rotation(img: torch.Tensor, u: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``img`` (1, 1, H, W) seen from the reference camera: each reference pixel p samples ``img`` at
    ``K R(u) K^-1 p``; and the mask of pixels that land inside."""
    _, _, H, W = img.shape
    R = pose_from_uv(u, torch.zeros_like(u))[:3, :3]
    Hm = K @ R @ torch.linalg.inv(K)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=img.dtype), torch.arange(W, dtype=img.dtype), indexing="ij")
    q = Hm @ torch.stack([xs.flatten(), ys.flatten(), torch.ones(H * W, dtype=img.dtype)])
    x, y = q[0] / q[2], q[1] / q[2]
    grid = torch.stack([(x + 0.5) / W * 2 - 1, (y + 0.5) / H * 2 - 1], -1).reshape(1, H, W, 2)
    inside = ((grid.abs() <= 1).all(-1)).to(img.dtype)[:, None]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False), inside


def measure_rotation(first: torch.Tensor, last: torch.Tensor, K: torch.Tensor, width: int = 320,
                     iterations: int = 12) -> tuple[np.ndarray, float, float]:
    """The rotation (rotation vector, radians, reference camera = ``first``) that aligns ``last`` to ``first``
    (both (1, 3, H, W) at the size ``K`` is for), and the mean absolute grey error before and after, in 8-bit
    levels: Levenberg-Marquardt on Huber-weighted grey residuals, at 1/4, 1/2 and all of ``width``."""
    H, W = first.shape[-2:]
    u = torch.zeros(3, dtype=torch.float64)
    for w in (width // 4, width // 2, width):
        size = (w, round(H * w / W))
        a, b = (grey(resize(x, size)).double() for x in (first, last))
        Ks = scale_intrinsics(K.double(), size[0] / W, size[1] / H)
        _, inside = warp_by_rotation(b, u, Ks)

        def residual(v: torch.Tensor, a=a, b=b, Ks=Ks, inside=inside) -> torch.Tensor:
            return ((warp_by_rotation(b, v, Ks)[0] - a) * inside).flatten()

        def cost(r: torch.Tensor) -> float:
            return float(torch.where(r.abs() < 0.02, 0.5 * r**2, 0.02 * (r.abs() - 0.01)).sum())

        lam = 1e-3
        for _ in range(iterations):
            r = residual(u)
            eye = 1e-4 * torch.eye(3, dtype=u.dtype)  # central differences (grid_sample has no forward mode)
            J = torch.stack([(residual(u + e) - residual(u - e)) / 2e-4 for e in eye], 1)  # (P, 3)
            wgt = torch.where(r.abs() < 0.02, torch.ones_like(r), 0.02 / r.abs().clamp_min(1e-12))
            Hm, g = J.T @ (wgt[:, None] * J), J.T @ (wgt * r)
            while lam < 1e8:
                step = -torch.linalg.solve(Hm + lam * torch.diag(Hm.diagonal()), g)
                if cost(residual(u + step)) < cost(r):
                    u, lam = u + step, lam / 3
                    break
                lam *= 5
            else:
                break
    warped, inside = warp_by_rotation(b, u, Ks)
    before = float((b - a).abs().mean()) * 255
    after = float(((warped - a).abs() * inside).sum() / inside.sum()) * 255
    return u.numpy(), before, after


def main() -> None:
    ap = video_arguments(__doc__)
    ap.set_defaults(lengths=[13])
    ap.add_argument("--min-deg", type=float, default=0.3, help="skip windows that turn less (default 0.3 degrees)")
    ap.add_argument("--steps", type=int, default=None, help="refinement iterations (default: wfb reconstruct's)")
    args = ap.parse_args()
    frames = video_frames(args)
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    W, H = read(frames[0]).shape[-1], read(frames[0]).shape[-2]
    work = working_size(W, H, model.cfg.input_size)
    # outputs at about the working size: only the trajectory is scored
    engines = engines_for(model, args.steps, max_pixels=work[0] * work[1])
    rows, errors, measured = [], {k: [] for k in engines}, []
    for c, n in windows(frames, args.every, args.lengths):
        stack = torch.stack([read(p) for p in frames[c - n // 2:c + n // 2 + 1]])
        H, W = stack.shape[-2:]
        photo_full = Photo(path=frames[c], rgb=np.zeros((H, W, 3), np.float32), mode="RGB")
        K_full = torch.as_tensor(intrinsics_for(photo_full, None)[0], dtype=torch.float64)
        u, before, after = measure_rotation(stack[:1], stack[-1:], K_full)
        axis, angle = axis_angle(pose_from_uv(torch.as_tensor(u), torch.zeros(3, dtype=torch.float64))[:3, :3].numpy())
        if math.degrees(angle) < args.min_deg:
            continue
        blurred = blur_frames(stack, 0)  # (3, H, W)
        photo = Photo(path=frames[c], rgb=blurred.permute(1, 2, 0).numpy(), mode="RGB")
        intrinsics = [float(K_full[0, 0]), float(K_full[1, 1]), float(K_full[0, 2]), float(K_full[1, 2])]
        row = [frames[c].name, n, f"{math.degrees(angle):.2f}", f"{abs(axis[2]) ** 2 * 100:.0f} %",
               f"{before:.1f} -> {after:.1f}"]
        measured.append(math.degrees(angle))
        row += score_axes(engines, photo, intrinsics, axis, errors)
        rows.append(row)
        print(row, flush=True)
    if not rows:
        raise SystemExit(f"{args.frames}: no window turns {args.min_deg:g} degrees or more; lower --min-deg")
    rows.append(["**median**", "", f"{statistics.median(measured):.2f}", "", "",
                 f"**{statistics.median(errors['network']):.1f}**", "",
                 f"**{statistics.median(errors['refined']):.1f}**", ""])
    print(f"\n{len(measured)} blurred windows of {args.frames} (every {args.every}, {args.lengths} frames); {machine()}\n")
    print(table(["centre frame", "frames", "measured rotation (deg)", "roll share", "alignment error (levels)",
                 "axis error, network (deg)", "rotation, network (deg)", "axis error, refined (deg)",
                 "rotation, refined (deg)"], rows))


if __name__ == "__main__":
    main()
