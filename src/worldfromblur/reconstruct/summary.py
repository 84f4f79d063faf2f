"""``summary.png``: one reconstruction as a panel in the style of the paper's Fig. 8, plus the re-blur check.

(a) blurred input, (b) first projected frame, (c) deblurred reference frame, (d) last projected frame, (e) depth,
(f) the coloured points seen from a turned viewpoint, (g) the re-blurred image with its PSNR against the input.
"""

from __future__ import annotations

import numpy as np
import torch

from ..viz import colorize_depth, labelled_row, splat_points, to_u8


def summary_panel(rec, frames: torch.Tensor, points: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """The panel of ``rec`` at its working size, from that size's projected frames and valid points."""
    work = rec.work
    W, H = work.size
    depth = work.depth[0, 0].numpy()
    view = splat_points(points, colors, work.K[0].double().numpy(), H, W)
    refined = f" {rec.psnr_network:.1f}->" if rec.refine_steps else " "
    return labelled_row(
        [to_u8(work.blurred), to_u8(frames[0]), to_u8(work.deblurred), to_u8(frames[-1]), colorize_depth(depth), view,
         to_u8(work.reblurred)],
        ["(a) blurred", "(b) first frame", "(c) deblurred", "(d) last frame",
         f"(e) depth {float(depth.min()):.1f}-{float(depth.max()):.1f} m", "(f) 3D",
         f"(g) re-blur{refined}{rec.psnr:.1f} dB"],
    )
