"""Writing a :class:`~worldfromblur.reconstruct.pipeline.Reconstruction` to disk: every file of one photo's output
folder (listed in docs/reconstruct.md), written into a temporary folder that is renamed when complete."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..geometry import point_cloud, trajectory_with_reference, warp
from .export import depth_mesh, write_depth_png, write_ply, write_tum
from .pipeline import FPS, Reconstruction


def projected_frames(rec: Reconstruction) -> torch.Tensor:
    """(2n + 1, 3, H, W): the sharp frame seen from every instant (reference in the middle), pixels the reference
    never saw filled from the nearest ones."""
    traj = trajectory_with_reference(rec.poses)[0]
    frames = [warp(rec.deblurred, rec.depth, T[None], rec.K, padding_mode="border", validate=False)[0][0] for T in traj]
    return torch.stack(frames)


def summary_dict(rec: Reconstruction, files: list[str]) -> dict:
    W, H = rec.photo.size
    h, w = rec.blurred.shape[-2:]
    K = rec.K[0].tolist()
    d = rec.depth[0, 0]
    return {
        "input": str(rec.photo.path),
        "input_size": [W, H],
        "input_mode": rec.photo.mode,
        "working_size": [w, h],
        "intrinsics_source": rec.K_source,
        "K": [[round(x, 6) for x in row] for row in K],
        "n": rec.u.shape[1] // 2,
        "fps": FPS,
        "reblur_psnr_network_db": round(rec.psnr_network, 3),
        "reblur_psnr_db": round(rec.psnr, 3),
        "refine_steps": rec.refine_steps,
        "refine": rec.refine_options,
        "depth_m": {"min": round(float(d.min()), 4), "median": round(float(d.median()), 4), "max": round(float(d.max()), 4)},
        "timings_s": {k: round(v, 4) for k, v in rec.timings.items()},
        "files": files,
    }


def write_outputs(rec: Reconstruction, out_dir: Path, mesh: bool = False, checkpoint: str = "") -> dict:
    """Write every output file of one reconstruction into ``out_dir``, which must not exist: the files go into a
    temporary sibling folder that is renamed when complete, so a failure leaves nothing behind."""
    from ..viz import colorize_depth, to_u8
    from .scene import write_scene_html
    from .summary import summary_panel

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        depth = rec.depth[0, 0].numpy().astype(np.float64)
        poses = rec.poses[0].double().numpy()
        K = rec.K[0].double().numpy()
        Image.fromarray(to_u8(rec.deblurred)).save(tmp / "deblurred.png")
        write_depth_png(tmp / "depth.png", depth)
        Image.fromarray(colorize_depth(depth)).save(tmp / "depth_vis.png")
        write_tum(tmp / "trajectory.txt", poses, FPS)
        (tmp / "poses.json").write_text(json.dumps({
            "convention": "reference-to-instant 4x4 poses T_k (X_k = R_k X_ref + t_k), time order, reference excluded; "
                          "u = axis-angle (rad), v = translation (m); see worldfromblur.geometry",
            "n": rec.u.shape[1] // 2, "fps": FPS, "K": K.tolist(), "size": list(rec.blurred.shape[-1:-3:-1]),
            "poses": poses.tolist(), "u": rec.u[0].tolist(), "v": rec.v[0].tolist()}, indent=1) + "\n")
        frames = projected_frames(rec)
        (tmp / "frames").mkdir()
        for k, f in enumerate(frames):
            Image.fromarray(to_u8(f)).save(tmp / "frames" / f"{k:02d}.png")
        Image.fromarray(to_u8(rec.reblurred)).save(tmp / "reblurred.png")

        pts_all, _, valid = point_cloud(rec.deblurred, rec.depth, rec.K, validate=False)
        pts_all, valid = pts_all[0].numpy(), valid[0].numpy()
        cols_all = to_u8(rec.deblurred).reshape(-1, 3)  # row-major pixel order, as the points
        pts, cols = pts_all[valid], cols_all[valid]
        comments = [f"world-from-blur reconstruction of {rec.photo.path.name}",
                    "reference camera frame, OpenCV axes (x right, y down, z forward), metres"]
        write_ply(tmp / "points.ply", pts, cols, comments=comments)
        if mesh:
            write_ply(tmp / "mesh.ply", pts_all, cols_all, depth_mesh(depth), comments=comments)
        write_scene_html(tmp / "scene.html", pts, cols, poses, K, rec.blurred.shape[-1], rec.blurred.shape[-2],
                         title=rec.photo.path.name)
        Image.fromarray(summary_panel(rec, frames, rec.reblurred, pts, cols)).save(tmp / "summary.png")
        rec.timings["write_s"] = time.perf_counter() - t0
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["summary.json"]
        summary = summary_dict(rec, files)
        summary["checkpoint"] = checkpoint
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
