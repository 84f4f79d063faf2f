"""Writing a :class:`~worldfromblur.reconstruct.pipeline.Reconstruction` to disk: every file of one photo's output
folder (listed in docs/reconstruct.md), written into a temporary folder that is renamed when complete."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..geometry import point_cloud, scale_intrinsics, trajectory_with_reference, warp_frames
from ..viz import colorize_depth, to_u8
from .export import depth_mesh, write_depth_png, write_ply, write_tum
from .fullres import DEFAULT_MAX_POINTS, output_size, resize
from .pipeline import FPS, Reconstruction, Views
from .scene import write_scene_html
from .summary import summary_panel

PNG_LEVEL = 1
"""zlib level of the output PNGs: Pillow's default (6) makes files about a third smaller but takes several times as
long, which at full resolution is seconds per photo."""
PNG_THREADS = 2
"""Threads that encode the output PNGs (zlib releases the GIL, so two encode at once)."""
SCENE_MAX_POINTS = 250_000
"""Most points ``scene.html`` embeds (a regular subset of the cloud above it): the viewer draws on a 2D canvas."""


def projected_frames(rec: Reconstruction, view: Views) -> torch.Tensor:
    """(2n + 1, 3, H, W): the sharp frame seen from every instant (reference in the middle), pixels the reference
    never saw filled from the nearest ones."""
    return warp_frames(view.deblurred, view.depth, trajectory_with_reference(rec.poses), view.K)[0]


def cloud_grid(view: Views, max_points: int = DEFAULT_MAX_POINTS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(deblurred, depth, K) of ``view``, or the same reduced to at most ``max_points`` pixels (colour anti-aliased,
    depth by nearest sample so that no point lies between a foreground and a background surface), for the point
    cloud and mesh."""
    W, H = view.size
    w, h = output_size(W, H, max_points)
    if (w, h) == (W, H):
        return view.deblurred, view.depth, view.K
    K = scale_intrinsics(view.K.double(), w / W, h / H).float()
    return (resize(view.deblurred, (w, h)).clamp(0, 1), F.interpolate(view.depth, size=(h, w), mode="nearest-exact"),
            K)


def points_of(deblurred: torch.Tensor, depth: torch.Tensor, K: torch.Tensor):
    """Every pixel's point (H*W, 3) and colour (H*W, 3) uint8 in row-major order, and the valid ones' of both."""
    pts_all, _, valid = point_cloud(deblurred, depth, K, validate=False)
    pts_all, valid = pts_all[0].numpy(), valid[0].numpy()
    cols_all = to_u8(deblurred).reshape(-1, 3)
    return pts_all, cols_all, pts_all[valid], cols_all[valid]


def summary_dict(rec: Reconstruction, files: list[str], points: int) -> dict:
    W, H = rec.photo.size
    K = rec.out.K[0].tolist()
    d = rec.out.depth[0, 0]
    return {
        "input": str(rec.photo.path),
        "input_size": [W, H],
        "input_mode": rec.photo.mode,
        "working_size": list(rec.work.size),
        "output_size": list(rec.out.size),
        "deblur_scales": rec.deblur_scales,
        "deconvolved": rec.deconvolved,
        "precision": rec.precision,
        "intrinsics_source": rec.K_source,
        "K": [[round(x, 6) for x in row] for row in K],
        "n": rec.u.shape[1] // 2,
        "fps": FPS,
        "reblur_psnr_network_db": round(rec.psnr_network, 3),
        "reblur_psnr_db": round(rec.psnr, 3),
        "motion_degenerate": rec.degenerate,
        "refine_steps": rec.refine_steps,
        "refine": rec.refine_options,
        "depth_source": rec.depth_source,
        "depth_m": {"min": round(float(d.min()), 4), "median": round(float(d.median()), 4), "max": round(float(d.max()), 4)},
        "points": points,
        "timings_s": {k: round(v, 4) for k, v in rec.timings.items()},
        "files": files,
    }


def _write_images(folder: Path, rec: Reconstruction, work_frames: torch.Tensor) -> None:
    """deblurred.png, depth.png, depth_vis.png, frames/ and reblurred.png, at the output size. The frames are those the
    output re-blur kept, else (an output at the working size) ``work_frames``, the working size's projected frames."""
    view = rec.out
    depth = view.depth[0, 0].numpy().astype(np.float64)
    (folder / "frames").mkdir()
    # PNG compression releases the GIL: the files are encoded on PNG_THREADS threads, while the frames are warped
    # when the re-blur did not keep them.
    with ThreadPoolExecutor(PNG_THREADS) as pool:
        def save(image: np.ndarray, name: str):
            return pool.submit(Image.fromarray(image).save, folder / name, compress_level=PNG_LEVEL)

        jobs = [save(to_u8(view.deblurred), "deblurred.png"), pool.submit(write_depth_png, folder / "depth.png", depth),
                save(colorize_depth(depth), "depth_vis.png"), save(to_u8(view.reblurred), "reblurred.png")]
        frames = view.frames
        if frames is None:
            frames = [to_u8(f) for f in (work_frames if view is rec.work else projected_frames(rec, view))]
        jobs += [save(f, f"frames/{k:02d}.png") for k, f in enumerate(frames)]
        for job in jobs:
            job.result()  # re-raises a failed write here


def _write_motion(folder: Path, rec: Reconstruction) -> None:
    """trajectory.txt (TUM) and poses.json (with K and the size of the output images)."""
    poses = rec.poses[0].double().numpy()
    write_tum(folder / "trajectory.txt", poses, FPS)
    (folder / "poses.json").write_text(json.dumps({
        "convention": "reference-to-instant 4x4 poses T_k (X_k = R_k X_ref + t_k), time order, reference excluded; "
                      "u = axis-angle (rad), v = translation (m); see worldfromblur.geometry",
        "n": rec.u.shape[1] // 2, "fps": FPS, "K": rec.out.K[0].double().tolist(), "size": list(rec.out.size),
        "poses": poses.tolist(), "u": rec.u[0].tolist(), "v": rec.v[0].tolist()}, indent=1) + "\n")


def _write_points(folder: Path, rec: Reconstruction, mesh: bool, max_points: int) -> tuple:
    """points.ply (and mesh.ply) at the output size, reduced to ``max_points``, and scene.html; returns the grid the
    points came from and the valid points and colours."""
    grid = cloud_grid(rec.out, max_points)
    pts_all, cols_all, pts, cols = points_of(*grid)
    comments = [f"world-from-blur reconstruction of {rec.photo.path.name}",
                "reference camera frame, OpenCV axes (x right, y down, z forward), metres"]
    write_ply(folder / "points.ply", pts, cols, comments=comments)
    deblurred, depth, K = grid
    if mesh:
        write_ply(folder / "mesh.ply", pts_all, cols_all, depth_mesh(depth[0, 0].numpy().astype(np.float64)),
                  comments=comments)
    keep = np.linspace(0, len(pts) - 1, SCENE_MAX_POINTS).astype(np.int64) if len(pts) > SCENE_MAX_POINTS else slice(None)
    write_scene_html(folder / "scene.html", pts[keep], cols[keep], rec.poses[0].double().numpy(),
                     K[0].double().numpy(), deblurred.shape[-1], deblurred.shape[-2], title=rec.photo.path.name)
    return grid, pts, cols


def write_outputs(rec: Reconstruction, out_dir: Path, mesh: bool = False, checkpoint: str = "",
                  max_points: int = DEFAULT_MAX_POINTS) -> dict:
    """Write every output file of one reconstruction into ``out_dir``, which must not exist: the files go into a
    temporary sibling folder that is renamed when complete, so a failure leaves nothing behind. ``summary.png``
    shows the working-size images (a panel of seven full-size images would be unwieldy)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        frames = projected_frames(rec, rec.work)  # the panel is at the working size: its own frames and points
        _write_images(tmp, rec, frames)
        _write_motion(tmp, rec)
        grid, pts, cols = _write_points(tmp, rec, mesh, max_points)
        points = len(pts)
        if grid[0] is not rec.work.deblurred:
            _, _, pts, cols = points_of(rec.work.deblurred, rec.work.depth, rec.work.K)
        Image.fromarray(summary_panel(rec, frames, pts, cols)).save(tmp / "summary.png")
        rec.timings["write_s"] = time.perf_counter() - t0
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["summary.json"]
        summary = summary_dict(rec, files, points)
        summary["checkpoint"] = checkpoint
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
