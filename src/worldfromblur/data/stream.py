"""The on-the-fly blur stream: endless training samples made on the training device from a pool of sharp frames.

For each sample of a step the stream

1. takes a pool frame (:mod:`worldfromblur.data.pool`) and augments it: enlarges it by a random zoom (>= 1, so that
   the field of view narrows; the zoom range is small, since the motion module reads motion from pixel streaks and
   must meet focal lengths like those of test photos), crops the sample size at a random place and flips it left to
   right; K follows every step;
2. draws a hand-held camera motion with the synthetic engine's motion model
   (:func:`worldfromblur.data.synthetic.engine.draw_motion`) and rescales it so that the longest pixel path of the
   exposure has a drawn length between none and ``max_blur_px`` (``length = max_blur_px * U**2``: short blur is
   common, long blur still frequent; a ``still`` fraction of exposures hardly moves);
3. renders the exposure by warping the sharp frame with its depth to ``2n * subframes + 1`` instants
   (:func:`worldfromblur.geometry.reblur`; ``subframes`` is chosen per step so that no pixel moves more than
   ``subframe_px`` between instants) and averages them in linear light;
4. scales the brightness (both images, in linear light), adds sensor noise to the blurred image (shot plus read
   noise, ``sigma * sqrt(0.2 + L)`` in linear light ``L``) and quantises both to 8 bits.

Every random choice of step ``s`` on rank ``r`` comes from ``numpy.random.default_rng([seed, s, r])``, so samples
are a pure function of (seed, step, rank) and an interrupted run resumes bit for bit. Batches are the
:class:`~worldfromblur.data.BlurDataset` dict plus ``valid_blur`` (1, H, W): 0 where some instant of the exposure saw
what the sharp frame does not (a disocclusion, or beyond its border), so that the blurred pixel there is invented;
the deblurring loss leaves such pixels out.

Warping a single frame cannot show what it hides: disoccluded pixels repeat their neighbours instead. That is the
price of endless data from any RGB-D frame; the synthetic engine's exact renders and the video builders' windows
remain the reference for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import forward_flow, pose_from_uv, reblur, scale_intrinsics
from ..imaging import Exposure, linear_to_srgb, srgb_to_linear, to_uint8
from .format import DatasetError
from .exposure import fill_holes
from .pool import SYNTHETIC_SIZE, FramePool
from .synthetic.engine import SyntheticOptions, draw_motion
from .synthetic.torch_render import RoomSampler

ROOM_SIZE = SYNTHETIC_SIZE  # a new room is zoomed and cropped as a synthetic pool frame is
ROOM_K = torch.from_numpy(SyntheticOptions(width=ROOM_SIZE[0], height=ROOM_SIZE[1]).K())


@dataclass
class StreamOptions(Exposure):
    """How the stream makes samples (saved with every run that uses it): the exposure
    (:class:`~worldfromblur.imaging.Exposure`; ``fps`` sets the time scale of the motion model, ``n`` is the model's)
    and these."""

    size: list = field(default_factory=lambda: [160, 120])
    """Sample size [W, H] in pixels."""
    zoom: list = field(default_factory=lambda: [1.0, 1.25])
    """Range of the enlargement of a pool frame beyond the least that covers the sample size."""
    flip: bool = True
    """Mirror half of the samples left to right."""
    max_blur_px: float = 40.0
    """Longest blur path at the sample size, in pixels."""
    still: float = 0.05
    """Fraction of exposures with at most one pixel of blur."""
    noise: float = 0.02
    """Largest sensor-noise level (drawn uniformly from 0 to it per sample)."""
    gain: list = field(default_factory=lambda: [0.7, 1.4])
    """Range of the brightness factor, in linear light."""
    rooms: float = 0.0
    """Fraction of samples made from a new procedural room each, ray-cast on the stream's device for that sample
    (:class:`worldfromblur.data.synthetic.torch_render.RoomSampler`; its rooms are never those of a pool or a
    dataset); the others come from the pool. 0: pool frames only."""

    def check(self) -> None:
        w, h = self.size
        if w < 16 or h < 16:
            raise DatasetError(f"stream size must be at least 16x16, got {w}x{h}")
        if not 1.0 <= self.zoom[0] <= self.zoom[1]:
            raise DatasetError(f"stream zoom must be a range [lo, hi] with 1 <= lo <= hi, got {self.zoom}")
        if self.max_blur_px < 0 or not 0 <= self.still <= 1 or self.noise < 0 or self.subframe_px <= 0:
            raise DatasetError("stream max_blur_px, noise must be >= 0, still in [0, 1], subframe_px > 0")
        if not 0 <= self.rooms <= 1:
            raise DatasetError(f"stream rooms is a fraction of samples, from 0 to 1, got {self.rooms}")


class BlurStream:
    """Training samples made on ``device`` from ``pool``; ``batch(step)`` is a pure function of (seed, step, rank).

    Args:
        pool: sharp RGB-D frames.
        opts: :class:`StreamOptions`.
        seed: the stream's seed.
        device: where samples are made (the training device).
    """

    def __init__(self, pool: FramePool, opts: StreamOptions, seed: int = 0, device: str | torch.device = "cpu"):
        opts.check()
        self.pool, self.opts, self.seed, self.device = pool, opts, seed, torch.device(device)
        self.rgb = self._colour_for_sampling(pool.rgb).to(self.device)
        self.depth = pool.depth.to(self.device)
        self.filled = fill_holes(pool.depth).to(self.device)  # every pixel needs a depth to be warped
        self.K = pool.K.double()
        self.motion = SyntheticOptions(n=opts.n, fps=opts.fps)
        self.rooms = RoomSampler(seed, self.device) if opts.rooms > 0 else None

    def _colour_for_sampling(self, rgb: torch.Tensor) -> torch.Tensor:
        """The pool's colour, shrunk once by area (in linear light) to the least cover of the sample size when the
        frames are much larger than the samples: bilinear sampling only enlarges from there (zoom >= 1), so it needs
        no anti-alias filter. The sampling grid is in normalised coordinates, so it reads either size."""
        W, H = self.opts.size
        W0, H0 = self.pool.size
        cover = max(W / W0, H / H0)
        if cover >= 0.75:
            return rgb
        size = (int(np.ceil(H0 * cover * 1.0001)), int(np.ceil(W0 * cover * 1.0001)))
        out = []
        for chunk in rgb.split(64):
            lin = F.interpolate(srgb_to_linear(chunk.permute(0, 3, 1, 2).float() / 255.0), size=size, mode="area")
            out.append(to_uint8(linear_to_srgb(lin)).permute(0, 2, 3, 1))
        return torch.cat(out)

    def _crop(self, rng: np.random.Generator, B: int, step: int = 0, rank: int = 0):
        """Augmented sharp frames (B, 3, H, W) sRGB, raw and filled depth (B, 1, H, W), K (B, 3, 3): pool frames
        zoomed, cropped and flipped, or (a fraction ``opts.rooms``) new rooms rendered as zoomed and cropped
        SYNTHETIC_SIZE frames."""
        W, H = self.opts.size
        W0, H0 = self.pool.size
        idx, grids, Ks, rooms = [], [], [], []
        for i in range(B):
            if self.rooms is not None and rng.random() < self.opts.rooms:
                f = max(W / ROOM_SIZE[0], H / ROOM_SIZE[1]) * rng.uniform(*self.opts.zoom)
                K = scale_intrinsics(ROOM_K, f, f)
                K[0, 2] -= rng.uniform(0, ROOM_SIZE[0] * f - W)
                K[1, 2] -= rng.uniform(0, ROOM_SIZE[1] * f - H)
                rooms.append((i, (step, rank, i), K.numpy()))
                Ks.append(K)
                continue
            j = int(rng.integers(len(self.pool)))
            f = max(W / W0, H / H0) * rng.uniform(*self.opts.zoom)
            x0 = rng.uniform(0, W0 * f - W)
            y0 = rng.uniform(0, H0 * f - H)
            flip = self.opts.flip and rng.random() < 0.5
            xs = np.arange(W, dtype=np.float64)
            if flip:
                xs = xs[::-1]
            # sample pixel x of the output reads the source at ((x + x0) + 0.5) / f - 0.5 (pixel centres)
            src_x = (xs + x0 + 0.5) / f - 0.5
            src_y = (np.arange(H, dtype=np.float64) + y0 + 0.5) / f - 0.5
            gx, gy = 2 * (src_x + 0.5) / W0 - 1, 2 * (src_y + 0.5) / H0 - 1
            grids.append(np.stack(np.meshgrid(gx, gy), -1))
            K = scale_intrinsics(self.K[j], f, f)
            K[0, 2] -= x0
            K[1, 2] -= y0
            if flip:
                K[0, 2] = W - 1 - K[0, 2]
            idx.append(j)
            Ks.append(K)
        room_rows = [r[0] for r in rooms]
        pool_rows = sorted(set(range(B)) - set(room_rows))
        sharp = torch.empty(B, 3, H, W, device=self.device)
        depth = torch.empty(B, 1, H, W, device=self.device)
        filled = torch.empty(B, 1, H, W, device=self.device)
        if pool_rows:
            grid = torch.from_numpy(np.stack(grids)).float().to(self.device)
            rgb = self.rgb[idx].permute(0, 3, 1, 2).float() / 255.0
            sharp[pool_rows] = F.grid_sample(rgb, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)
            for out, src in ((depth, self.depth), (filled, self.filled)):
                out[pool_rows] = F.grid_sample(src[idx, None], grid, mode="nearest", padding_mode="border", align_corners=False)
        if rooms:
            sharp[room_rows], depth[room_rows] = self.rooms.render([r[1] for r in rooms], [r[2] for r in rooms], H, W)
            filled[room_rows] = depth[room_rows]  # rendered depth has no holes
        return sharp, depth, filled, torch.stack(Ks).float().to(self.device)

    def _motion(self, rng: np.random.Generator, filled: torch.Tensor, K: torch.Tensor):
        """Poses (B, 2n, 4, 4) rescaled to drawn blur lengths; each exposure's largest pixel step between two
        instants and its longest pixel path (B,) each."""
        B, n = filled.shape[0], self.opts.n
        u, v = [], []
        for _ in range(B):
            ui, vi, _ = draw_motion(rng, self.motion)
            u.append(ui)
            v.append(vi)
        u = torch.from_numpy(np.stack(u)).float().to(self.device)  # (B, 2n + 1, 3), reference at n (zero)
        v = torch.from_numpy(np.stack(v)).float().to(self.device)
        target = self.opts.max_blur_px * torch.from_numpy(rng.random(B) ** 2).float().to(self.device)
        still = torch.from_numpy(rng.random(B) < self.opts.still).to(self.device)
        target = torch.where(still, torch.from_numpy(rng.random(B)).float().to(self.device), target)
        coarse = F.interpolate(filled, scale_factor=0.125, mode="nearest") if min(filled.shape[-2:]) >= 32 else filled
        Kc = K.clone()
        s = coarse.shape[-1] / filled.shape[-1]
        Kc[:, :2] *= s  # nearest sampling reads pixel 8i at coarse pixel i

        def lengths(u, v):
            flow, _ = forward_flow(coarse, pose_from_uv(u, v), Kc)  # (B, 2n + 1, 2, h, w)
            steps = (flow[:, 1:] - flow[:, :-1]).norm(dim=2) / s  # in sample pixels
            return steps.sum(1).flatten(1).amax(1), steps.flatten(1).amax(1)

        length, _ = lengths(u, v)
        scale = (target / length.clamp_min(1e-3)).clamp(max=1e3)[:, None, None]
        u, v = u * scale, v * scale
        length, step_px = lengths(u, v)
        T = pose_from_uv(u, v)
        return torch.cat([T[:, :n], T[:, n + 1:]], dim=1), step_px, length

    @torch.no_grad()
    def batch(self, step: int, batch_size: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """Samples of ``step`` for ``rank``: the BlurDataset dict (on the stream's device) plus ``valid_blur`` and
        ``blur_px`` (B,), the longest pixel path of each exposure."""
        rng = np.random.default_rng([self.seed, step, rank])
        sharp, depth, filled, K = self._crop(rng, batch_size, step, rank)
        poses, step_px, length = self._motion(rng, filled, K)
        subframes = int(np.clip(np.ceil(float(step_px.max()) / self.opts.subframe_px), 1, self.opts.max_subframes))
        gain = torch.from_numpy(rng.uniform(*self.opts.gain, batch_size)).float().to(self.device)[:, None, None, None]
        sharp = linear_to_srgb(srgb_to_linear(sharp) * gain)
        sharp = torch.round(sharp * 255) / 255
        blurred, valid = reblur(sharp, filled, poses, K, subframes=subframes, averaging=self.opts.averaging, return_valid=True,
                                validate=False)
        gen = torch.Generator(device=self.device).manual_seed(int(rng.integers(2**62)))
        sigma = torch.from_numpy(rng.uniform(0, self.opts.noise, batch_size)).float().to(self.device)[:, None, None, None]
        lin = srgb_to_linear(blurred)
        noise = torch.randn(lin.shape, generator=gen, device=self.device)
        blurred = torch.round(linear_to_srgb(lin + noise * sigma * torch.sqrt(0.2 + lin)) * 255) / 255
        return {
            "blurred": blurred, "sharp": sharp, "depth": depth, "valid_depth": depth > 0, "poses": poses, "K": K,
            "subframes": torch.full((batch_size,), subframes, device=self.device),
            "valid_blur": valid, "blur_px": length,
        }
