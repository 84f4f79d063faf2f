"""The on-the-fly blur stream: endless training samples made on the training device from a pool of sharp frames.

For each sample of a step the stream

1. takes a pool frame (:mod:`worldfromblur.data.pool`) and augments it: enlarges it by a random zoom (>= 1, so that
   the field of view narrows; the zoom range is small, since the motion module reads motion from pixel streaks and
   must meet focal lengths like those of test photos), crops the sample size at a random place and flips it left to
   right; K follows every step;
2. draws a hand-held camera motion with the synthetic engine's motion model
   (:func:`worldfromblur.data.shake.draw_shake`) and rescales it so that the longest pixel path of the
   exposure has a drawn length between none and ``max_blur_px`` (``length = max_blur_px * U**2``: short blur is
   common, long blur still frequent; a ``still`` fraction of exposures hardly moves);
3. renders the exposure by warping the sharp frame with its depth to ``2n * subframes + 1`` instants
   (:func:`worldfromblur.geometry.reblur`; ``subframes`` keeps the pixel steps between instants near
   ``subframe_px``, :meth:`BlurStream.subframes`) and averages them in linear light;
4. scales the brightness (both images, in linear light), adds sensor noise to the blurred image (shot plus read
   noise, ``sigma * sqrt(0.2 + L)`` in linear light ``L``; none for a ``clean`` fraction) and quantises both to 8
   bits.

Every random choice of step ``s`` on rank ``r`` comes from generators keyed by ``[seed, s, r]``: by default one
``torch.Generator`` on the stream's device draws the whole batch at once (crops, motion, blur lengths, brightness,
noise; :func:`worldfromblur.data.shake.draw_shake`), so that making a batch needs no per-sample host work and never
waits for the device; ``numpy.random.default_rng([seed, s, r])`` decides which samples are new rooms and draws
those rooms (in ``room_workers`` processes ahead of their step, where a fast device would otherwise wait). Samples
are a pure function of (seed, step, rank) on one kind of device (a CUDA generator draws other numbers than a CPU
one), and an interrupted run resumes bit for bit. ``draws="host"`` keeps the stream of earlier
runs (NumPy, sample by sample). Batches are the
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

from ..geometry import path_steps, pose_from_uv, reblur, scale_intrinsics
from ..imaging import Exposure, linear_to_srgb, srgb_to_linear, to_uint8
from .exposure import fill_holes
from .format import DatasetError
from .pool import SYNTHETIC_SIZE, FramePool
from .shake import (
    device_generator,
    draw_blur_lengths,
    draw_shake,
    fixed_subframes,
    sensor_readout,
    uniform,
)
from .synthetic.engine import SyntheticOptions, check_focal_range, draw_motion
from .synthetic.torch_render import RoomSampler

ROOM_SIZE = SYNTHETIC_SIZE  # a new room is zoomed and cropped as a synthetic pool frame is
ROOMS_AHEAD = 2  # steps whose new rooms the room workers draw before their step comes
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
    clean: float = 0.0
    """Fraction of blurred images given no sensor noise (quantised to 8 bits only), so that the deblurring module
    also meets noise-free input and learns to leave fine texture alone (rendered frames, denoised photos); the rest
    are drawn as ``noise`` says."""
    gain: list = field(default_factory=lambda: [0.7, 1.4])
    """Range of the brightness factor, in linear light."""
    roll: float = 0.7
    """Spread of a motion's rotation direction about the optical axis against pitch and yaw (1), with device draws:
    0.7 gives the roll share of real hand-held video (median 0.38 against 0.37 on the 7-Scenes excerpt;
    docs/synthetic-data.md); the engine's model, and host draws, use 0.4."""
    draws: str = "device"
    """Where the random choices are drawn: ``"device"`` (torch, on the stream's device, a batch at once: no
    per-sample host work and no wait for the device; on a GPU a fixed number of sub-instants,
    :meth:`BlurStream.subframes`) or ``"host"`` (NumPy, sample by sample, the sub-instants chosen per step from the
    drawn motion: the stream of runs made before device draws, to resume one exactly)."""
    rooms: float = 0.0
    """Fraction of samples made from a new procedural room each, ray-cast on the stream's device for that sample
    (:class:`worldfromblur.data.synthetic.torch_render.RoomSampler`; its rooms are never those of a pool or a
    dataset); the others come from the pool. 0: pool frames only."""
    room_workers: int = 0
    """Processes that draw the new rooms (and their texture banks) on the host ahead of their step, so that a fast
    device does not wait for NumPy (about 2 ms a room on one CPU core; ``benchmarks/bench_render.py``). The samples
    are the same for any number; 0: drawn in the training process when needed (right for a CPU, whose cores train)."""
    focal_range: list | None = None
    """The new rooms' lens: their focal length (after the zoom) times a factor drawn log-uniformly from [lo, hi],
    as ``data.focal_range`` does for "synthetic:N" pool frames (set from it by ``wfb train``). None: the zoom only."""

    def check(self) -> None:
        w, h = self.size
        if w < 16 or h < 16:
            raise DatasetError(f"stream size must be at least 16x16, got {w}x{h}")
        if not 1.0 <= self.zoom[0] <= self.zoom[1]:
            raise DatasetError(f"stream zoom must be a range [lo, hi] with 1 <= lo <= hi, got {self.zoom}")
        if self.max_blur_px < 0 or not 0 <= self.still <= 1 or self.noise < 0 or self.subframe_px <= 0:
            raise DatasetError("stream max_blur_px, noise must be >= 0, still in [0, 1], subframe_px > 0")
        if not 0 <= self.clean <= 1:
            raise DatasetError(f"stream clean is a fraction of samples, from 0 to 1, got {self.clean}")
        if self.draws not in ("device", "host"):
            raise DatasetError(f"stream draws must be device or host, got {self.draws!r}")
        if self.roll < 0:
            raise DatasetError(f"stream roll is a spread, 0 or more, got {self.roll}")
        if not 0 <= self.rooms <= 1:
            raise DatasetError(f"stream rooms is a fraction of samples, from 0 to 1, got {self.rooms}")
        if isinstance(self.room_workers, bool) or not isinstance(self.room_workers, int) or self.room_workers < 0:
            raise DatasetError(f"stream room_workers must be a whole number, 0 or more, got {self.room_workers!r}")
        try:
            check_focal_range(self.focal_range)
        except ValueError as err:
            raise DatasetError(f"stream {err}") from None


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
        self.K_device = pool.K.float().to(self.device)
        self.motion = SyntheticOptions(n=opts.n, fps=opts.fps)
        self.rooms = RoomSampler(seed, self.device, workers=opts.room_workers) if opts.rooms > 0 else None

    def close(self) -> None:
        """Stop the room workers, if any (they start again if the stream makes another batch)."""
        if self.rooms is not None:
            self.rooms.close()

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

    def _crop(self, rng: np.random.Generator, B: int, step: int = 0, rank: int = 0, gen: torch.Generator | None = None):
        """Augmented sharp frames (B, 3, H, W) sRGB, raw and filled depth (B, 1, H, W), K (B, 3, 3): pool frames
        zoomed, cropped and flipped, or (a fraction ``opts.rooms``) new rooms rendered as zoomed and cropped
        SYNTHETIC_SIZE frames. The pool frames' choices come from ``gen`` on the device when given, else from
        ``rng`` sample by sample; which samples are rooms, and their cameras, always from ``rng`` (a room is drawn
        on the host)."""
        W, H = self.opts.size
        rooms, pool_rows = self._room_plan(rng, B, step, rank)
        room_rows = [r[0] for r in rooms]
        sharp = torch.empty(B, 3, H, W, device=self.device)
        depth = torch.empty(B, 1, H, W, device=self.device)
        filled = torch.empty(B, 1, H, W, device=self.device)
        K = torch.empty(B, 3, 3, device=self.device)
        if pool_rows:
            draw = self._pool_crops_device if gen is not None else self._pool_crops_host
            idx, grid, K_pool = draw(gen if gen is not None else rng, len(pool_rows))
            rows = slice(None) if not rooms else torch.tensor(pool_rows, device=self.device)
            rgb = self.rgb[idx].permute(0, 3, 1, 2).float() / 255.0
            sharp[rows] = F.grid_sample(rgb, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)
            for out, src in ((depth, self.depth), (filled, self.filled)):
                out[rows] = F.grid_sample(src[idx, None], grid, mode="nearest", padding_mode="border", align_corners=False)
            K[rows] = K_pool
        if rooms:
            sharp[room_rows], depth[room_rows] = self.rooms.render([r[1] for r in rooms], [r[2] for r in rooms], H, W)
            filled[room_rows] = depth[room_rows]  # rendered depth has no holes
            K[room_rows] = torch.from_numpy(np.stack([r[2] for r in rooms])).float().to(self.device)
        return sharp, depth, filled, K

    def _room_plan(self, rng: np.random.Generator, B: int, step: int, rank: int) -> tuple[list, list]:
        """The first draws of a step's ``rng``: which samples are new rooms, ``(row, key, K (3, 3))`` each, and
        which rows are pool frames. A pure function of the generator's state, so the rooms of steps to come can be
        handed to the room workers before their step (:meth:`batch`)."""
        W, H = self.opts.size
        rooms, pool_rows = [], []
        for i in range(B):
            if self.rooms is not None and rng.random() < self.opts.rooms:
                f = max(W / ROOM_SIZE[0], H / ROOM_SIZE[1]) * rng.uniform(*self.opts.zoom)
                if self.opts.focal_range is not None:  # may widen the view: a rendered room has no border
                    f *= np.exp(rng.uniform(*np.log(self.opts.focal_range)))
                K = scale_intrinsics(ROOM_K, f, f)
                K[0, 2] -= rng.random() * (ROOM_SIZE[0] * f - W)  # a negative span (a wider view) is as good
                K[1, 2] -= rng.random() * (ROOM_SIZE[1] * f - H)
                rooms.append((i, (step, rank, i), K.numpy()))
            else:
                pool_rows.append(i)
        return rooms, pool_rows

    def _rooms_ahead(self, step: int, B: int, rank: int) -> None:
        """Hand the new rooms of the next ``ROOMS_AHEAD`` steps (at this batch size and rank) to the room workers."""
        if self.rooms is None or not self.rooms.workers:
            return
        W, H = self.opts.size
        for s in range(step + 1, step + 1 + ROOMS_AHEAD):
            rooms, _ = self._room_plan(np.random.default_rng([self.seed, s, rank]), B, s, rank)
            self.rooms.ahead([r[1] for r in rooms], [r[2] for r in rooms], H, W)

    def _pool_crops_host(self, rng: np.random.Generator, B: int):
        """B pool crops drawn sample by sample with NumPy: pool indices, sampling grids (B, H, W, 2), K (B, 3, 3)."""
        W, H = self.opts.size
        W0, H0 = self.pool.size
        idx, grids, Ks = [], [], []
        for _ in range(B):
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
        grid = torch.from_numpy(np.stack(grids)).float().to(self.device)
        return torch.tensor(idx, device=self.device), grid, torch.stack(Ks).float().to(self.device)

    def _pool_crops_device(self, gen: torch.Generator, B: int):
        """The same crops as :meth:`_pool_crops_host`, all B drawn at once on the device."""
        W, H = self.opts.size
        W0, H0 = self.pool.size
        dev = self.device
        j = torch.randint(len(self.pool), (B,), generator=gen, device=dev)
        f = max(W / W0, H / H0) * uniform(gen, (B,), *self.opts.zoom, dev)
        x0 = torch.rand(B, generator=gen, device=dev) * (W0 * f - W).clamp_min(0)
        y0 = torch.rand(B, generator=gen, device=dev) * (H0 * f - H).clamp_min(0)
        flip = (torch.rand(B, generator=gen, device=dev) < 0.5) & self.opts.flip
        xs = torch.arange(W, device=dev, dtype=torch.float32).expand(B, W)
        xs = torch.where(flip[:, None], W - 1 - xs, xs)
        src_x = (xs + x0[:, None] + 0.5) / f[:, None] - 0.5
        src_y = (torch.arange(H, device=dev, dtype=torch.float32) + y0[:, None] + 0.5) / f[:, None] - 0.5
        gx, gy = 2 * (src_x + 0.5) / W0 - 1, 2 * (src_y + 0.5) / H0 - 1  # (B, W), (B, H)
        grid = torch.stack([gx[:, None, :].expand(B, H, W), gy[:, :, None].expand(B, H, W)], dim=-1)
        K = self.K_device[j].clone()
        K[:, :2] *= f[:, None, None]
        K[:, 0, 2] -= x0
        K[:, 1, 2] -= y0
        K[:, 0, 2] = torch.where(flip, W - 1 - K[:, 0, 2], K[:, 0, 2])
        return j, grid, K

    def _motion(self, rng: np.random.Generator | None, filled: torch.Tensor, K: torch.Tensor,
                gen: torch.Generator | None = None):
        """Poses (B, 2n, 4, 4) rescaled to drawn blur lengths; each exposure's largest pixel step between two
        instants and its longest pixel path (B,) each. Drawn on the device from ``gen`` when given, else with
        NumPy from ``rng``."""
        B, n, dev = filled.shape[0], self.opts.n, self.device
        if gen is not None:
            u, v = draw_shake(gen, B, n, self.motion.fps, self.motion.rot_speed, self.motion.trans_speed,
                              self.opts.roll)
            target = draw_blur_lengths(gen, B, self.opts.max_blur_px, self.opts.still)
        else:
            u, v = [], []
            for _ in range(B):
                ui, vi, _ = draw_motion(rng, self.motion)
                u.append(ui)
                v.append(vi)
            u = torch.from_numpy(np.stack(u)).float().to(dev)  # (B, 2n + 1, 3), reference at n (zero)
            v = torch.from_numpy(np.stack(v)).float().to(dev)
            target = self.opts.max_blur_px * torch.from_numpy(rng.random(B) ** 2).float().to(dev)
            still = torch.from_numpy(rng.random(B) < self.opts.still).to(dev)
            target = torch.where(still, torch.from_numpy(rng.random(B)).float().to(dev), target)
        coarse = F.interpolate(filled, scale_factor=0.125, mode="nearest") if min(filled.shape[-2:]) >= 32 else filled
        Kc = K.clone()
        s = coarse.shape[-1] / filled.shape[-1]
        Kc[:, :2] *= s  # nearest sampling reads pixel 8i at coarse pixel i

        def lengths(u, v):
            steps = path_steps(coarse, pose_from_uv(u, v), Kc) / s  # (B, 2n, h, w), in sample pixels
            return steps.sum(1).flatten(1).amax(1), steps.flatten(1).amax(1)

        length, _ = lengths(u, v)
        scale = (target / length.clamp_min(1e-3)).clamp(max=1e3)[:, None, None]
        u, v = u * scale, v * scale
        length, step_px = lengths(u, v)
        T = pose_from_uv(u, v)
        return torch.cat([T[:, :n], T[:, n + 1:]], dim=1), step_px, length

    def subframes(self) -> int:
        """The sub-instants per frame interval of every step with ``draws="device"`` on a GPU
        (:func:`~worldfromblur.data.shake.fixed_subframes`); on the CPU, where reading the drawn motion costs nothing,
        each step takes what its motion needs, as with host draws."""
        o = self.opts
        return fixed_subframes(o.max_blur_px, o.n, o.subframe_px, o.max_subframes)

    @torch.no_grad()
    def batch(self, step: int, batch_size: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """Samples of ``step`` for ``rank``: the BlurDataset dict (on the stream's device) plus ``valid_blur`` and
        ``blur_px`` (B,), the longest pixel path of each exposure."""
        rng = np.random.default_rng([self.seed, step, rank])
        B, dev = batch_size, self.device
        gen = device_generator(dev, [self.seed, step, rank]) if self.opts.draws == "device" else None
        sharp, depth, filled, K = self._crop(rng, B, step, rank, gen)
        self._rooms_ahead(step, B, rank)  # drawn while this step trains
        poses, step_px, length = self._motion(rng, filled, K, gen)
        if gen is not None and dev.type != "cpu":
            subframes = self.subframes()
        else:  # from the drawn motion: free on the CPU, one wait for the device per step elsewhere
            subframes = int(np.clip(np.ceil(float(step_px.max()) / self.opts.subframe_px), 1, self.opts.max_subframes))
        if gen is not None:
            gain = uniform(gen, (B, 1, 1, 1), *self.opts.gain, dev)
            sigma = uniform(gen, (B, 1, 1, 1), 0.0, self.opts.noise, dev)
            if self.opts.clean > 0:  # drawn only then, so that every earlier stream stays as it was
                sigma = torch.where(uniform(gen, (B, 1, 1, 1), 0.0, 1.0, dev) < self.opts.clean, 0.0, sigma)
        else:
            gain = torch.from_numpy(rng.uniform(*self.opts.gain, B)).float().to(dev)[:, None, None, None]
            gen = torch.Generator(device=dev).manual_seed(int(rng.integers(2**62)))
            sigma = torch.from_numpy(rng.uniform(0, self.opts.noise, B)).float().to(dev)[:, None, None, None]
            if self.opts.clean > 0:
                sigma = sigma * torch.from_numpy(rng.random(B) >= self.opts.clean).float().to(dev)[:, None, None, None]
        sharp = linear_to_srgb(srgb_to_linear(sharp) * gain)
        sharp = torch.round(sharp * 255) / 255
        blurred, valid = reblur(sharp, filled, poses, K, subframes=subframes, averaging=self.opts.averaging, return_valid=True,
                                validate=False)
        blurred = sensor_readout(srgb_to_linear(blurred), sigma, gen)
        return {
            "blurred": blurred, "sharp": sharp, "depth": depth, "valid_depth": depth > 0, "poses": poses, "K": K,
            "subframes": torch.full((B,), subframes, device=dev),
            "valid_blur": valid, "blur_px": length,
        }
