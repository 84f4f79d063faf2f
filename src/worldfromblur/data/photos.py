"""Blurred and sharp crops of real photographs, made on the training device: the deblurring module's real data.

A photograph has no depth, so its blur is the camera's rotation alone, which moves every pixel by a homography
``K R K^-1`` whatever its depth (hand-held blur is mostly rotation: a few degrees a second move a pixel far more than
a few centimetres do). For each sample of a step the :class:`PhotoStream`

1. takes a photograph at its own resolution, a random ``crop`` x ``crop`` window of it and a margin around the
   window (so that pixels that the motion brings into view are real, not repeated borders), flips half of them, and
   gives the camera a focal length from a horizontal field of view between ``fov`` degrees (phones: about 65-80,
   action cameras up to 120) with the principal point at the photo's centre;
2. draws a hand-held rotation (yaw, pitch and roll; :func:`worldfromblur.data.shake.draw_shake`) and scales it so
   that the longest pixel path in the window has a drawn length from none to ``max_blur_px``
   (``max_blur_px * U**2``, a ``still`` fraction nearly none);
3. lifts the photo to scene light: decodes sRGB to linear light and, in a ``highlights`` fraction of samples,
   brightens pixels near white by up to ``highlight_gain`` times (the light a photo clipped); warps it to
   ``2n * subframes + 1`` instants and averages them there, then clips to the sensor's range, so that bright
   lights streak as they do in real blurred photos; the sharp target is the reference instant, clipped alike;
4. scales the brightness, adds shot and read noise (``sigma * sqrt(0.2 + L)`` in linear light, sigma up to
   ``noise``), quantises to 8 bits and, in a ``jpeg`` fraction of samples, compresses the blurred image as a JPEG
   of quality ``jpeg_quality`` (on the host: Pillow's codec).

Every random choice of step ``s`` on rank ``r`` comes from generators keyed by ``[seed, s, r]``: which photo, where
and whether to compress from NumPy's on the host (which slices the windows and runs the codec), everything else from
a ``torch.Generator`` on the stream's device; a batch is a pure function of (seed, step, rank) on one kind of
device. Photos are decoded once, when the
stream opens, and kept as 8-bit tensors in host memory; a step copies only its windows to the device.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..geometry import interpolate_trajectory, pose_from_uv
from ..imaging import Exposure, linear_to_srgb, srgb_to_linear, to_uint8
from .format import DatasetError
from .pool import held_out_count
from .shake import (
    device_generator,
    draw_blur_lengths,
    draw_shake,
    fixed_subframes,
    sensor_readout,
    uniform,
)
from .synthetic.engine import SyntheticOptions
from .synthetic.textures import PHOTO_SUFFIXES


@dataclass
class PhotoOptions(Exposure):
    """How the photo stream blurs its crops (saved with every run that uses it): the exposure
    (:class:`~worldfromblur.imaging.Exposure`) and these."""

    crop: int = 256
    """Side of the square crops, pixels of the photo."""
    fov: list = field(default_factory=lambda: [55.0, 100.0])
    """Range of the camera's horizontal field of view, degrees (sets the focal length in photo pixels)."""
    flip: bool = True
    """Mirror half of the crops left to right."""
    max_blur_px: float = 64.0
    """Longest blur path in a crop, pixels."""
    still: float = 0.05
    """Fraction of exposures with at most one pixel of blur."""
    roll: float = 0.7
    """Spread of the rotation's roll component against yaw and pitch (1): real hand-held motion's roll share (see
    :class:`~worldfromblur.data.stream.StreamOptions`)."""
    highlights: float = 0.5
    """Fraction of samples whose near-white pixels are brightened before integration (light streaks)."""
    highlight_gain: float = 6.0
    """Largest brightening of a pixel at white."""
    noise: float = 0.02
    """Largest sensor-noise level (drawn uniformly from 0 to it per sample)."""
    gain: list = field(default_factory=lambda: [0.7, 1.4])
    """Range of the brightness factor, in linear light."""
    jpeg: float = 0.5
    """Fraction of blurred images compressed as JPEG."""
    jpeg_quality: list = field(default_factory=lambda: [60, 95])
    """Range of the JPEG quality."""
    max_pixels: int = 4_000_000
    """Photos with more pixels are shrunk to this many when the stream opens (by area, in linear light), so that
    thousands of phone photos fit in memory (3 bytes a pixel as kept); 0: every photo at its own size."""

    def check(self) -> None:
        if self.crop < 16:
            raise DatasetError(f"photo crop must be at least 16 pixels, got {self.crop}")
        if self.max_pixels < 0:
            raise DatasetError(f"photo max_pixels must be 0 (no limit) or positive, got {self.max_pixels}")
        if not 1.0 <= self.fov[0] <= self.fov[1] < 170.0:
            raise DatasetError(f"photo fov must be a range [lo, hi] of degrees, 1 <= lo <= hi < 170, got {self.fov}")
        if self.max_blur_px < 0 or self.noise < 0 or self.subframe_px <= 0 or self.highlight_gain < 1:
            raise DatasetError("photo max_blur_px and noise must be >= 0, subframe_px > 0, highlight_gain >= 1")
        for name in ("still", "highlights", "jpeg"):
            if not 0 <= getattr(self, name) <= 1:
                raise DatasetError(f"photo {name} is a fraction of samples, from 0 to 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise DatasetError(f"photo jpeg_quality must be a range within [1, 100], got {self.jpeg_quality}")


def find_photos(folders: list[str | Path]) -> list[Path]:
    """Image files under ``folders`` (recursively), sorted; a one-line error for a missing folder or one without
    images."""
    paths = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such photo folder; give folders of photographs (png, jpg, ...)")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not found:
            raise DatasetError(f"{folder}: holds no photographs ({', '.join(sorted(PHOTO_SUFFIXES))}); give a folder "
                               f"of images")
        paths += found
    return paths


def split_photos(folders: list[str | Path], held_out: float) -> tuple[list[Path], list[Path]]:
    """(training, held-out) photo files: of each folder, its last ``held_out`` fraction (in sorted order) is kept out
    of training, by :func:`~worldfromblur.data.pool.held_out_count`'s rule."""
    train, held = [], []
    for folder in folders:
        paths = find_photos([folder])
        k = held_out_count(len(paths), held_out)
        train += paths[:len(paths) - k]
        held += paths[len(paths) - k:]
    return train, held


def load_photos(paths: list[Path], crop: int, margin: int, progress: bool = True,
                max_pixels: int = 0) -> list[torch.Tensor]:
    """The photos as (H, W, 3) uint8 tensors, checked to hold a crop with its margin; a one-line error names the
    first unreadable photo, or how many are too small for the crop. Photos over ``max_pixels`` (0: no limit) are
    shrunk to it by area in linear light, so that a folder of phone photos fits in memory."""
    photos, small = [], []
    for p in tqdm(paths, desc="photos", unit="photo", disable=not progress):
        try:
            with Image.open(p) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(f"{p}: cannot be read as an image ({err}); remove it from the photo folder") from None
        H, W = rgb.shape[:2]
        if max_pixels and H * W > max_pixels:
            s = math.sqrt(max_pixels / (H * W))
            lin = srgb_to_linear(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
            lin = F.interpolate(lin, size=(int(H * s), int(W * s)), mode="area")
            rgb = to_uint8(linear_to_srgb(lin))[0].permute(1, 2, 0).numpy()
        if min(rgb.shape[:2]) < crop + 2 * margin:
            small.append(p)
            continue
        photos.append(torch.from_numpy(rgb))
    if small:
        raise DatasetError(f"{len(small)} of {len(paths)} photos (e.g. {small[0]}) are smaller than a {crop}x{crop} "
                           f"crop with its {margin}-pixel margin ({crop + 2 * margin} px a side); choose a smaller "
                           f"data.photo.crop or max_blur_px, or remove them")
    return photos


class PhotoStream:
    """Blurred and sharp crops of ``photos`` made on ``device``; ``batch(step)`` is a pure function of
    (seed, step, rank).

    Args:
        photos: (H, W, 3) uint8 tensors, each at least ``opts.crop + 2 * margin(opts)`` a side.
        opts: :class:`PhotoOptions`.
        seed: the stream's seed.
        device: where samples are made.
    """

    def __init__(self, photos: list[torch.Tensor], opts: PhotoOptions, seed: int = 0, device: str | torch.device = "cpu"):
        opts.check()
        if not photos:
            raise DatasetError("the photo stream has no photos")
        self.photos, self.opts, self.seed, self.device = photos, opts, seed, torch.device(device)
        self.margin = margin(opts)
        self.motion = SyntheticOptions(n=opts.n, fps=opts.fps)

    def _windows(self, rng: np.random.Generator, gen: torch.Generator, B: int):
        """Windows with their margins (B, 3, S + 2m, S + 2m) sRGB and their K (B, 3, 3); which photo and where
        from ``rng`` (on the host, which slices the windows), the rest from ``gen``."""
        S, m, dev = self.opts.crop, self.margin, self.device
        side = S + 2 * m
        windows, centres = [], []
        for j in rng.integers(len(self.photos), size=B):
            H0, W0 = self.photos[j].shape[:2]
            y0, x0 = int(rng.integers(H0 - side + 1)), int(rng.integers(W0 - side + 1))
            windows.append(self.photos[j][y0:y0 + side, x0:x0 + side])
            centres.append([W0 / 2 - x0, H0 / 2 - y0, W0])
        rgb = torch.stack(windows).to(dev, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
        cx, cy, width = torch.tensor(centres, device=dev, dtype=torch.float32).unbind(1)
        fov = torch.deg2rad(uniform(gen, (B,), *self.opts.fov, dev))
        f = width / (2 * torch.tan(fov / 2))
        flip = (torch.rand(B, generator=gen, device=dev) < 0.5) & self.opts.flip
        rgb = torch.where(flip[:, None, None, None], rgb.flip(-1), rgb)
        cx = torch.where(flip, side - cx, cx)  # the mirrored window's centre, in pixel-centre coordinates
        K = torch.zeros(B, 3, 3, device=dev)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, cx - 0.5, cy - 0.5, 1.0
        return rgb, K

    def _rotations(self, gen: torch.Generator, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation vectors (B, 2n + 1, 3) scaled to drawn blur lengths in the crop, and those lengths (B,)."""
        B, n = K.shape[0], self.opts.n
        u, _ = draw_shake(gen, B, n, self.motion.fps, self.motion.rot_speed, self.motion.trans_speed, self.opts.roll)
        target = draw_blur_lengths(gen, B, self.opts.max_blur_px, self.opts.still)
        length = path_lengths(u, K, self.margin, self.opts.crop)
        u = u * (target / length.clamp_min(1e-3)).clamp(max=1e3)[:, None, None]
        return u, path_lengths(u, K, self.margin, self.opts.crop)

    @torch.no_grad()
    def batch(self, step: int, batch_size: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """Samples of ``step`` for ``rank``: ``blurred`` and ``sharp`` (B, 3, S, S) sRGB in [0, 1] (8-bit values),
        ``valid_blur`` (B, 1, S, S; 0 where an instant looked beyond the window's margin), ``K`` (B, 3, 3) of the
        crop and ``blur_px`` (B,), each exposure's longest pixel path."""
        B, S, m, dev, o = batch_size, self.opts.crop, self.margin, self.device, self.opts
        rng = np.random.default_rng([self.seed, step, rank, 1])
        gen = device_generator(dev, [self.seed, step, rank, 1])
        window, K = self._windows(rng, gen, B)
        u, length = self._rotations(gen, K)
        light = srgb_to_linear(window)
        boost = uniform(gen, (B, 1, 1, 1), 0.0, o.highlight_gain - 1, dev)
        boost = boost * (torch.rand(B, 1, 1, 1, generator=gen, device=dev) < o.highlights)
        white = ((window.amax(1, keepdim=True) - 0.9) / 0.1).clamp(0, 1) ** 2  # 0 below 0.9 sRGB, 1 at white
        light = light * (1 + boost * white)
        blurred, valid = rotate_and_average(light, u, K, fixed_subframes(o.max_blur_px, o.n, o.subframe_px,
                                                                         o.max_subframes))
        crop = (slice(None), slice(None), slice(m, m + S), slice(m, m + S))
        gain = uniform(gen, (B, 1, 1, 1), *o.gain, dev)
        sharp = linear_to_srgb((light[crop] * gain).clamp(0, 1))
        blurred = (blurred[crop] * gain).clamp(0, 1)
        blurred = sensor_readout(blurred, uniform(gen, (B, 1, 1, 1), 0.0, o.noise, dev), gen)
        quality = rng.integers(o.jpeg_quality[0], o.jpeg_quality[1] + 1, size=B)
        blurred = jpeg_roundtrip(blurred, {int(i): int(quality[i]) for i in np.flatnonzero(rng.random(B) < o.jpeg)})
        K_crop = K.clone()
        K_crop[:, 0, 2] -= m
        K_crop[:, 1, 2] -= m
        return {"blurred": blurred, "sharp": torch.round(sharp * 255) / 255, "valid_blur": valid[crop],
                "K": K_crop, "blur_px": length}


def margin(opts: PhotoOptions) -> int:
    """Pixels kept around a crop for what the motion brings into view: a quarter of the longest blur, plus a little
    (the reference instant is mid-exposure, so a path reaches about half its length either way, and long paths are
    rare: ``max_blur_px * U**2``); what lies beyond is marked invalid in ``valid_blur``."""
    return math.ceil(opts.max_blur_px / 4) + 4


def _homographies(R: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, M, 3, 3) maps from reference pixels to the pixels of each instant, ``K R K^-1``, for rotations R
    (B, M, 3, 3)."""
    return K[:, None] @ R @ torch.linalg.inv(K)[:, None]


def _rotations(u: torch.Tensor) -> torch.Tensor:
    return pose_from_uv(u, torch.zeros_like(u))


def path_lengths(u: torch.Tensor, K: torch.Tensor, margin: int, crop: int) -> torch.Tensor:
    """Longest pixel path (B,) through the instants of ``u`` (B, M, 3) over a 9 x 9 grid of the crop."""
    ticks = torch.linspace(margin, margin + crop - 1, 9, device=u.device)
    y, x = torch.meshgrid(ticks, ticks, indexing="ij")
    p = torch.stack([x.flatten(), y.flatten(), torch.ones_like(x.flatten())])  # (3, P)
    q = _homographies(_rotations(u)[..., :3, :3], K) @ p  # (B, M, 3, P)
    xy = q[:, :, :2] / q[:, :, 2:].clamp_min(1e-6)
    return (xy[:, 1:] - xy[:, :-1]).norm(dim=2).sum(1).amax(1)


def rotate_and_average(light: torch.Tensor, u: torch.Tensor, K: torch.Tensor, subframes: int):
    """The exposure of a rotating camera: ``light`` (B, C, H, W, linear) seen at every instant of ``u``
    (B, 2n + 1, 3), ``subframes`` per interval (u interpolated linearly), averaged; and (B, 1, H, W) validity, 0
    where an instant looked outside the image."""
    B, _, H, W = light.shape
    R = interpolate_trajectory(_rotations(u), subframes)[..., :3, :3]  # (B, M, 3, 3)
    M = R.shape[1]
    inv = torch.linalg.inv(_homographies(R, K))  # instant pixel -> reference pixel
    ys, xs = torch.meshgrid(torch.arange(H, device=u.device, dtype=u.dtype),
                            torch.arange(W, device=u.device, dtype=u.dtype), indexing="ij")
    p = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(3, -1)
    total = torch.zeros_like(light)
    valid = torch.ones(B, 1, H, W, device=light.device, dtype=light.dtype)
    for k in range(M):
        q = inv[:, k] @ p  # (B, 3, HW)
        xy = q[:, :2] / q[:, 2:].clamp_min(1e-6)
        gx, gy = (xy[:, 0] + 0.5) / W * 2 - 1, (xy[:, 1] + 0.5) / H * 2 - 1
        grid = torch.stack([gx, gy], -1).reshape(B, H, W, 2)
        total += F.grid_sample(light, grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = (gx.abs() <= 1) & (gy.abs() <= 1)
        valid = valid * inside.reshape(B, 1, H, W)
    return total / M, valid


def _jpeg(img: np.ndarray, quality: int) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    with Image.open(buf) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy())


def jpeg_roundtrip(images: torch.Tensor, quality: dict[int, int]) -> torch.Tensor:
    """``images`` (B, 3, H, W) in [0, 1] with rows ``i`` of ``quality`` compressed as JPEG at ``quality[i]``
    (Pillow's codec, 4:2:0 chroma as cameras write; on the host's cores, a thread per image, so that a step with JPEG
    waits once for the device)."""
    if not quality:
        return images
    rows = sorted(quality)
    host = (images[rows] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    with ThreadPoolExecutor(max_workers=min(len(rows), os.cpu_count() or 1, 16)) as pool:  # Pillow frees the GIL
        decoded = list(pool.map(_jpeg, host, [quality[i] for i in rows]))
    out = images.clone()
    out[rows] = torch.stack(decoded).permute(0, 3, 1, 2).to(images.device).float() / 255.0
    return out
