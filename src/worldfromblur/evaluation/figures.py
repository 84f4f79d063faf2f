"""A per-sample figure in the style of the paper's Fig. 7: blurred input, first projected frame, deblurred frame,
last projected frame, ground truth, depth, and a 3D view of the coloured points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..geometry import point_cloud, warp
from ..viz import colorize_depth, labelled_row, splat_points, to_u8


def figure_panel(batch: dict, out: dict, i: int, path: Path) -> None:
    H, W = batch["blurred"].shape[-2:]
    deb, depth, K = out["deblurred"][i : i + 1], out["depth"][i : i + 1].float(), batch["K"][i : i + 1]
    first = warp(deb.float(), depth, out["poses"][i : i + 1, 0].float(), K, padding_mode="border", validate=False)[0]
    last = warp(deb.float(), depth, out["poses"][i : i + 1, -1].float(), K, padding_mode="border", validate=False)[0]
    pts, cols, valid = point_cloud(deb.float(), depth, K, validate=False)
    view = splat_points(pts[0][valid[0]].cpu().numpy(), (cols[0][valid[0]].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8),
                         K[0].cpu().numpy(), H, W)
    row = labelled_row(
        [to_u8(batch["blurred"][i]), to_u8(first[0]), to_u8(deb[0]), to_u8(last[0]), to_u8(batch["sharp"][i]),
         colorize_depth(depth[0, 0].cpu().numpy()), view],
        ["(a) blurred", "(b) first frame", "(c) deblurred", "(d) last frame", "(e) ground truth", "(f) depth", "(g) 3D"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)
