"""Blurred samples from real RGB-D video: windows of 2n + 1 frames, relative poses, and the exposure they make.

A window is ``2n + 1`` consecutive colour frames (every ``stride``-th window centre). Its sample is the middle frame
(sharp), that frame's registered depth, the poses of the other frames relative to it (package convention: reference
to instant), and the blurred image (its exposure described by :class:`worldfromblur.imaging.Exposure`):

* between each pair of consecutive frames, ``s - 1`` intermediate instants
  are rendered, with the pose interpolated as :func:`worldfromblur.geometry.interpolate_trajectory` does and the image
  warped from the two frames around it with their own depth (blended by time, each where it has a source); all
  ``2n s + 1`` instants are then averaged. ``s`` is chosen per window so that no pixel moves more than
  ``subframe_px`` between instants (at most ``max_subframes``). This removes the ghosting of averaging seven frames
  1/30 s apart, which show a moving edge seven times instead of as a streak.
* with ``max_subframes=1``: the paper's average of the 2n + 1 frames themselves (s = 1).

Either way the average is taken in linear light unless ``averaging="srgb"`` (the paper's). The sample records ``s``,
so ``reblur(sharp, depth, poses, K, subframes=s)`` re-creates its blur.

Windows are skipped, and counted in the manifest with the reason, when a frame lacks depth or a pose, when the
frames are not evenly spaced in time (a dropped frame), when a file is unreadable, or when odometry fails.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ... import __version__
from ...geometry import interpolate_trajectory, invert_pose, warp
from ...imaging import Exposure, linear_to_srgb, srgb_to_linear, to_uint8
from ..build import BuildPlan, SkipSample, split_scenes
from ..cameras import rotation_angle_deg, scale_intrinsics_np, steps_per_frame
from ..exposure import choose_subframes, fill_holes
from ..format import DatasetError, SampleRecord
from .readers import (FOLDERS_DEPTH_SCALE, Frame, Sequence, folders_sequence, icl_sequence, load_depth, load_rgb,
                      nyu_sequence, sevenscenes_sequence, tum_sequence)
from .odometry import window_poses


@dataclass
class RGBDOptions(Exposure):
    """Everything that decides what a build from RGB-D video contains (saved in build.json; a resume must match):
    the exposure (:class:`~worldfromblur.imaging.Exposure`; ``fps`` is the recording's own) and these."""

    kind: str = "tum"  # "tum", "icl", "nyu", "7scenes" or "folders"
    width: int = 320
    height: int = 240
    stride: int = 1
    poses: str = "groundtruth"  # or "odometry" (always odometry for NYU)
    block_frames: int = 0  # > 0: cut each sequence into independent scenes of this many frames
    max_gap: float = 1.5  # a gap between frames larger than this many median frame intervals breaks a window
    camera: str | None = None  # TUM: freiburg1/2/3 (default: from the name)
    intrinsics: list | None = None  # fx fy cx cy of the colour images, overriding the dataset's
    icl_handle_fy_sign: bool = True
    depth_is_ray_distance: bool = False
    pgm_byte_order: str = "little"
    frame_range: list | None = None  # 7-Scenes, frame folders: [first, last] frame numbers to use
    depth_scale: float | None = None  # frame folders: depth units per metre (default: millimetres)
    keep_frames: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def open_sequence(root: str, opts: RGBDOptions) -> Sequence:
    if opts.kind == "tum":
        return tum_sequence(root, opts.camera, opts.intrinsics, require_poses=opts.poses == "groundtruth")
    if opts.kind == "icl":
        return icl_sequence(root, opts.intrinsics, opts.icl_handle_fy_sign, opts.depth_is_ray_distance)
    if opts.kind == "nyu":
        return nyu_sequence(root, opts.pgm_byte_order)
    if opts.kind == "7scenes":
        return sevenscenes_sequence(root, tuple(opts.frame_range) if opts.frame_range else None, opts.intrinsics)
    if opts.kind == "folders":  # the recording's frame rate is the exposure's fps
        return folders_sequence(root, tuple(opts.frame_range) if opts.frame_range else None, opts.intrinsics, opts.fps,
                                opts.depth_scale or FOLDERS_DEPTH_SCALE)
    raise ValueError(f"unknown kind {opts.kind!r}")


# ------------------------------------------------------------------------------------------------- frames at the output size


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> float sRGB in [0, 1] at ``size`` (area averaging in linear light)."""
    x = srgb_to_linear(torch.from_numpy(np.array(rgb, np.float64)).permute(2, 0, 1)[None] / 255.0)
    if (x.shape[-1], x.shape[-2]) != size:
        x = F.interpolate(x, size=size[::-1], mode="area")
    return linear_to_srgb(x)[0].permute(1, 2, 0).numpy()


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) metres -> ``size``, averaging valid readings only; an output pixel needs half its area measured."""
    d = torch.from_numpy(np.asarray(depth, np.float64))[None, None]
    if (d.shape[-1], d.shape[-2]) == size:
        return depth.astype(np.float64)
    valid = (d > 0).double()
    s = F.interpolate(d * valid, size=size[::-1], mode="area")
    c = F.interpolate(valid, size=size[::-1], mode="area")
    return torch.where(c >= 0.5, s / c.clamp_min(1e-9), torch.zeros_like(s))[0, 0].numpy()


def fill_depth(depth: np.ndarray) -> np.ndarray:
    """Holes (0) filled from their surroundings (pull-push over a pyramid), for warping; measured values unchanged."""
    if not bool((np.asarray(depth) > 0).any()):
        raise DatasetError("depth map has no readings")
    return fill_holes(torch.from_numpy(np.asarray(depth, np.float64))[None])[0].numpy()


# ------------------------------------------------------------------------------------------------- exposure synthesis


def synthesize_exposure(frames: np.ndarray, depths: list[np.ndarray], traj: np.ndarray, K: np.ndarray, subframes: int,
                        linear: bool) -> np.ndarray:
    """The blurred image of a window: frames (2n + 1, H, W, 3) sRGB floats, their filled depths, trajectory
    (2n + 1, 4, 4) reference-to-instant. Returns (H, W, 3) sRGB."""
    x = torch.from_numpy(frames).float().permute(0, 3, 1, 2)
    x = srgb_to_linear(x) if linear else x
    T = torch.from_numpy(traj).float()
    Kt = torch.from_numpy(np.asarray(K, np.float32))
    total = x.sum(0)  # the 2n + 1 real instants
    count = len(x)
    if subframes > 1:
        # sub-instant j of interval k: frames k and k + 1 warped there and blended with weights 1 - j/s and j/s where
        # both see the point; each frame is warped to all the sub-instants of an interval in one batch
        fine = interpolate_trajectory(T[None], subframes)[0]  # the same rule reblur uses
        D = [torch.from_numpy(d).float()[None, None] for d in depths]
        lam = (torch.arange(1, subframes, dtype=x.dtype) / subframes)[:, None, None, None]  # (s - 1, 1, 1, 1)
        for k in range(len(x) - 1):
            instants = fine[k * subframes + 1 : (k + 1) * subframes]
            (a, va), (b, vb) = (warp(x[src][None], D[src], (instants @ invert_pose(T[src]))[None], Kt,
                                     padding_mode="border", validate=False) for src in (k, k + 1))
            a, va, b, vb = a[0], (1 - lam) * va[0], b[0], lam * vb[0]
            wsum = va + vb
            blend = (va * a + vb * b) / wsum.clamp_min(1e-12)
            total = total + torch.where(wsum > 0, blend, (1 - lam) * a + lam * b).sum(0)
            count += subframes - 1
    mean = (total / count).clamp(0, 1)
    return (linear_to_srgb(mean) if linear else mean).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------------- the build


def windows_of(seq: Sequence, opts: RGBDOptions) -> list[int]:
    """Centre frame indices of the windows of a sequence."""
    return list(range(opts.n, len(seq.frames) - opts.n, opts.stride))


def _window(seq: Sequence, c: int, opts: RGBDOptions) -> list:
    """The 2n + 1 frames around ``c``, or SkipSample saying why they cannot make a sample."""
    n = opts.n
    window = seq.frames[c - n : c + n + 1]
    times = np.array([f.time for f in window])
    if (np.diff(times) > opts.max_gap * (1.0 / seq.fps)).any():
        raise SkipSample("time gap in the window (a dropped frame)")
    if opts.block_frames > 0 and (c - n) // opts.block_frames != (c + n) // opts.block_frames:
        raise SkipSample("window straddles two scene blocks")
    if any(f.depth is None for f in window):
        raise SkipSample("a frame has no depth within the time tolerance")
    if seq.kind != "nyu" and opts.poses == "groundtruth" and any(f.pose is None for f in window):
        raise SkipSample("a frame has no ground-truth pose (outside or in a gap of the trajectory)")
    return window


def _trajectory(window: list, rgbs: np.ndarray, depths: list, K: np.ndarray, use_gt: bool, provenance: dict) -> np.ndarray:
    """(2n + 1, 4, 4) reference-to-instant poses: the ground truth's, or dense RGB-D odometry's (noted in
    ``provenance``, with its distance from the ground truth where there is one)."""
    n = len(window) // 2
    if use_gt:
        provenance["poses"] = "ground truth"
        return np.stack([np.linalg.inv(f.pose) @ window[n].pose for f in window])
    traj, fits = window_poses([(to_uint8(r), d) for r, d in zip(rgbs, depths)], K)
    provenance["poses"] = "estimated: dense RGB-D odometry"
    provenance["odometry"] = [{"photometric_rms": round(f.photometric_rms, 5), "depth_rms_m": round(f.depth_rms_m, 5),
                               "inlier_fraction": round(f.inlier_fraction, 4), "converged": f.converged} for f in fits]
    if not all(f.ok() for f in fits):
        raise SkipSample("odometry failed (poor fit or no convergence)")
    if all(f.pose is not None for f in window):  # ground truth exists too: say how far odometry is from it
        truth = np.stack([np.linalg.inv(f.pose) @ window[n].pose for f in window])
        err = np.linalg.inv(truth) @ traj
        provenance["odometry_vs_groundtruth"] = {
            "max_translation_mm": round(float(1000 * np.linalg.norm(err[:, :3, 3], axis=1).max()), 3),
            "max_rotation_deg": round(float(rotation_angle_deg(err).max()), 4)}
    return traj


def load_frame(seq: Sequence, frame: Frame, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame's colour (sRGB floats) and depth (metres, 0 = no reading) at the build's ``size``."""
    return resize_rgb(load_rgb(seq, frame), size), resize_depth(load_depth(seq, frame), size)


class FrameCache:
    """The last ``capacity`` frames a worker loaded, at the build's size: consecutive windows share all but
    ``stride`` of their 2n + 1 frames, so each frame is decoded and resized about once instead of 2n + 1 times.
    Callers must not modify the arrays returned."""

    def __init__(self, capacity: int):
        self.capacity, self.frames = capacity, OrderedDict()

    def __call__(self, seq: Sequence, frame: Frame, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        key = (seq.root, frame.rgb, frame.depth, size)
        if key in self.frames:
            self.frames.move_to_end(key)
            return self.frames[key]
        self.frames[key] = loaded = load_frame(seq, frame, size)  # an unreadable frame raises and is not kept
        if len(self.frames) > self.capacity:
            self.frames.popitem(last=False)
        return loaded


def window_sample(seq: Sequence, c: int, opts: RGBDOptions, load=load_frame) -> SampleRecord:
    """The sample of the window centred on frame ``c`` of ``seq``: its frames, depth, poses and synthesised blur.
    ``load(seq, frame, size)`` reads a frame (default :func:`load_frame`; a :class:`FrameCache` reuses them)."""
    n, size = opts.n, (opts.width, opts.height)
    window = _window(seq, c, opts)
    K = scale_intrinsics_np(seq.K, size[0] / seq.size[0], size[1] / seq.size[1])
    try:
        loaded = [load(seq, f, size) for f in window]
    except DatasetError as err:
        raise SkipSample(str(err)) from None
    rgbs = np.stack([rgb for rgb, _ in loaded])
    depths = [depth for _, depth in loaded]
    if (depths[n] > 0).mean() < 0.3:
        raise SkipSample("the reference frame has depth on fewer than 30% of its pixels")
    provenance = {"source": seq.kind, "sequence": seq.name, "frames": [f.rgb.name for f in window],
                  "times": [round(f.time, 6) for f in window],
                  "generator": f"world-from-blur {__version__}", "depth": "measured, registered to colour"}
    traj = _trajectory(window, rgbs, depths, K, seq.kind != "nyu" and opts.poses == "groundtruth", provenance)
    poses = np.delete(traj, n, axis=0)
    s, blur_stats = choose_subframes(depths[n], poses, K, opts.subframe_px, opts.max_subframes)
    try:
        filled = [fill_depth(d) for d in depths]
    except DatasetError as err:
        raise SkipSample(f"{err} in window around {window[n].rgb.name}") from None
    blurred = synthesize_exposure(rgbs, filled, traj, K, s, opts.averaging == "linear")
    stats = {**steps_per_frame(traj), "depth_min_m": float(depths[n][depths[n] > 0].min()),
             "depth_max_m": float(depths[n].max()), **blur_stats}
    meta = {"n": n, "fps": round(seq.fps, 4), "subframes": s, "averaging": opts.averaging,
            "scene": scene_label(seq, c, opts), "provenance": provenance,
            "stats": {k: round(v, 5) for k, v in stats.items()}}
    return SampleRecord(to_uint8(blurred), to_uint8(rgbs[n]), depths[n], poses, K, meta,
                        to_uint8(rgbs) if opts.keep_frames else None)


def rgbd_renderer(roots: list[str], options: dict):
    """Worker-side factory: opens the sequences once, returns ``index -> SampleRecord``."""
    opts = RGBDOptions(**options)
    seqs = [open_sequence(r, opts) for r in roots]
    index = [(s, c) for s, seq in enumerate(seqs) for c in windows_of(seq, opts)]
    cache = FrameCache(2 * (2 * opts.n + 1))

    def sample(i: int) -> SampleRecord:
        s, c = index[i]
        return window_sample(seqs[s], c, opts, cache)

    return sample


def scene_label(seq: Sequence, centre: int, opts: RGBDOptions) -> str:
    return f"{seq.kind}-{seq.name}" + (f"-{centre // opts.block_frames:04d}" if opts.block_frames > 0 else "")


def plan_rgbd(roots: list[str], opts: RGBDOptions, splits: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> BuildPlan:
    """A build from one or more sequences; every file list is parsed (and checked) here, before anything is written."""
    roots = [str(Path(r).resolve()) for r in roots]
    seqs = [open_sequence(r, opts) for r in roots]
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        raise DatasetError(f"two sequences share a folder name ({', '.join(names)}); their scenes would be confused")
    scene_of = [scene_label(seq, c, opts) for seq in seqs for c in windows_of(seq, opts)]
    if not scene_of:
        raise DatasetError(f"{roots[0]}: too few frames for one window of {2 * opts.n + 1}")
    scenes = sorted(set(scene_of))
    split = split_scenes(len(scenes), splits, seed)
    request = {"source": opts.kind, "roots": roots, "splits": list(splits), "seed": seed,
               "options": opts.to_dict()}
    return BuildPlan(source=opts.kind, request=request, num=len(scene_of), scene_of=scene_of,
                     split_of_scene=dict(zip(scenes, split)), renderer=rgbd_renderer,
                     renderer_args=(roots, opts.to_dict()))

