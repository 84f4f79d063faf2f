"""From one blurred photo to a 3D scene: resize, run the networks, refine, and write every output.

Sizes. A model works at the resolution it was trained at (``ModelConfig.input_size``, W0 x H0). A photo is resized
to about the same number of pixels *with its own aspect ratio kept* (each side a multiple of 8), not cropped or
padded: the networks are fully convolutional, nothing of the photo is lost, and a border of padding would not be
blurred like the rest. K is scaled with the image (see :func:`worldfromblur.geometry.scale_intrinsics`). Photos
more than 3:1 wide or tall are refused. Every output is at this working resolution, the one its geometry is exact at.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import WfbError
from ..geometry import point_cloud, pose_from_uv, scale_intrinsics, trajectory_with_reference, warp
from ..models import WorldFromBlur
from .export import depth_mesh, write_depth_png, write_ply, write_tum
from .photo import Photo, intrinsics_for
from .refine import refine

DEFAULT_INPUT_SIZE = (320, 240)
MAX_ASPECT = 3.0
FPS = 30.0
"""Frame rate of the instants of the exposure: that of the training data (the paper's 30 fps video)."""


class ReconstructionError(WfbError):
    """The model's output for a photo is unusable (for example not finite); the message names the photo."""


def working_size(width: int, height: int, input_size=DEFAULT_INPUT_SIZE) -> tuple[int, int]:
    """The size a photo is resized to: about ``W0 * H0`` pixels, the photo's aspect ratio, sides multiples of 8."""
    aspect = width / height
    if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
        raise WfbError(f"aspect ratio {width}x{height} is more than {MAX_ASPECT:g}:1; crop the photo first")
    area = float(input_size[0] * input_size[1])
    h = math.sqrt(area / aspect)
    w = aspect * h
    return max(16, int(round(w / 8)) * 8), max(16, int(round(h / 8)) * 8)


def resize_photo(photo: Photo, K: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, h, w) image and (1, 3, 3) K at ``size`` (anti-aliased bilinear, pixel centres as in ``scale_intrinsics``)."""
    W, H = photo.size
    w, h = size
    x = torch.from_numpy(photo.rgb).permute(2, 0, 1)[None].float()
    if (w, h) != (W, H):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    Ks = scale_intrinsics(torch.as_tensor(K, dtype=torch.float64), w / W, h / H).float()[None]
    return x, Ks


@dataclass
class Reconstruction:
    """Everything a photo's reconstruction holds, at the working resolution (tensors on the CPU, batch of one)."""

    photo: Photo
    K_source: str
    blurred: torch.Tensor  # (1, 3, h, w)
    K: torch.Tensor  # (1, 3, 3)
    deblurred: torch.Tensor  # (1, 3, h, w)
    depth: torch.Tensor  # (1, 1, h, w) metres
    u: torch.Tensor  # (1, 2n, 3) radians
    v: torch.Tensor  # (1, 2n, 3) metres
    psnr_network: float  # re-blur PSNR of the networks' output against the input
    psnr: float  # re-blur PSNR of the final (refined) output
    reblurred: torch.Tensor  # (1, 3, h, w) the final output re-blurred (refinement's exposure model)
    refine_steps: int = 0
    refine_options: dict = field(default_factory=dict)  # what refinement optimised (see refine.refine)
    linear_light: bool = True  # the model's exposure model: average instants in linear light
    timings: dict = field(default_factory=dict)

    @property
    def poses(self) -> torch.Tensor:
        return pose_from_uv(self.u, self.v)


class Reconstructor:
    """A loaded model and the options of a run; call it on a :class:`Photo`."""

    def __init__(self, model: WorldFromBlur, device: str = "cpu", refine_steps: int = 0, refine_sharp: bool = False,
                 refine_motion: str = "smooth", refine_translation: bool = False):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.refine_steps = refine_steps
        self.refine_sharp = refine_sharp
        self.refine_motion = refine_motion
        self.refine_translation = refine_translation
        size = model.cfg.input_size
        self.input_size = tuple(size) if size else DEFAULT_INPUT_SIZE
        self.linear_light = bool(model.cfg.linear_light)

    def _refine_options(self) -> dict:
        return {"motion": self.refine_motion, "translation": self.refine_translation, "sharp": self.refine_sharp}

    @torch.no_grad()
    def networks(self, x: torch.Tensor) -> dict:
        """The three networks on a (1, 3, h, w) image at the working size: deblurred, depth, u, v (float, CPU)."""
        return {k: t.float().cpu() for k, t in self.model.predict(x.to(self.device)).items()}

    def __call__(self, photo: Photo, intrinsics: list[float] | None = None) -> Reconstruction:
        timings = {}
        t = time.perf_counter()
        K_full, source = intrinsics_for(photo, intrinsics)
        x, K = resize_photo(photo, K_full, working_size(*photo.size, self.input_size))
        timings["prepare_s"] = time.perf_counter() - t

        t = time.perf_counter()
        out = self.networks(x)
        if not all(torch.isfinite(v).all() for v in out.values()):
            raise ReconstructionError(f"{photo.path}: the model's output is not finite for this photo; "
                                      "check the image's values and the checkpoint")
        timings["networks_s"] = time.perf_counter() - t

        t = time.perf_counter()
        with torch.enable_grad():
            r = refine(x, out["deblurred"], out["depth"], out["u"], out["v"], K, self.refine_steps,
                       linear_light=self.linear_light, optimize_sharp=self.refine_sharp, motion=self.refine_motion,
                       translation=self.refine_translation)
        timings["refine_s"] = time.perf_counter() - t
        return Reconstruction(photo=photo, K_source=source, blurred=x, K=K, deblurred=r.sharp, depth=out["depth"],
                              u=r.u, v=r.v, psnr_network=r.psnr_before, psnr=r.psnr_after, reblurred=r.reblurred,
                              refine_steps=r.steps, refine_options=self._refine_options() if r.steps else {},
                              linear_light=self.linear_light, timings=timings)


# ------------------------------------------------------------------------------------------------- outputs


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
