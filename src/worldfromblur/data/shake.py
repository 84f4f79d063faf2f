"""Hand-held camera shake and the sensor, drawn in torch, a batch at once, on the device that uses it: what the blur
stream and the photo stream share.

:func:`draw_shake` is the synthetic engine's motion model (:func:`worldfromblur.data.synthetic.engine.draw_motion`,
described in that module: a shake level, log-uniform angular and linear speeds jittered around it, random
directions with weaker roll, an acceleration and a 6-12 Hz tremor) for B exposures at once, every random number from
one ``torch.Generator`` on the device. The NumPy version stays the engine's, so that datasets keep their samples;
``tests/data/test_stream.py`` checks that both draw the same distribution. The blur stream uses this one: no
per-sample Python loop and no host round trip during a training step. :func:`device_generator` keys a stream's
generator, :func:`draw_blur_lengths` draws how long each exposure's blur is, :func:`fixed_subframes` how finely an
exposure is sampled without looking at the drawn motion, and :func:`sensor_readout` adds the sensor's noise and
quantises.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from ..imaging import linear_to_srgb

ROLL_SCALE = 0.4
"""The engine's spread of a rotation direction's roll component against pitch and yaw (1); the streams draw with
0.7, the roll share measured on real hand-held video (docs/synthetic-data.md)."""


def uniform(gen: torch.Generator, shape: tuple, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def device_generator(device: torch.device, key: list[int]) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from the integer ``key`` (e.g. [seed, step, rank]) through NumPy's
    SeedSequence, so that every key gives its own stream of numbers."""
    words = np.random.SeedSequence(key).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)


def draw_blur_lengths(gen: torch.Generator, batch: int, max_blur_px: float, still: float) -> torch.Tensor:
    """The longest pixel path (B,) each exposure is scaled to: ``max_blur_px * U**2`` (short blur common, long blur
    still frequent), and under a pixel for a ``still`` fraction of the exposures."""
    dev = gen.device
    target = max_blur_px * torch.rand(batch, generator=gen, device=dev) ** 2
    is_still = torch.rand(batch, generator=gen, device=dev) < still
    return torch.where(is_still, torch.rand(batch, generator=gen, device=dev), target)


def fixed_subframes(max_blur_px: float, n: int, subframe_px: float, max_subframes: int) -> int:
    """Sub-instants per frame interval for any exposure up to ``max_blur_px``, chosen without reading the drawn
    motion (so that no step waits for the device): enough for a path whose steps between instants are up to twice
    the even share (paths speed up and slow down), capped at ``max_subframes``."""
    step_px = 2 * max_blur_px / (2 * n)
    return int(np.clip(np.ceil(step_px / subframe_px), 1, max_subframes))


def sensor_readout(linear: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The sensor's image of ``linear`` light (B, C, H, W): shot plus read noise, ``sigma * sqrt(0.2 + L)``, then
    sRGB quantised to 8 bits (values k / 255)."""
    noise = torch.randn(linear.shape, generator=gen, device=linear.device)
    return torch.round(linear_to_srgb(linear + noise * sigma * torch.sqrt(0.2 + linear)) * 255) / 255


def draw_shake(gen: torch.Generator, batch: int, n: int, fps: float, rot_speed: tuple[float, float],
               trans_speed: tuple[float, float], roll: float = ROLL_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose parameters (u, v), each (B, 2n + 1, 3), of the 2n + 1 frame instants (reference at index n, zero), drawn
    on the generator's device.

    Args:
        gen: the generator (its device is where the draws are made).
        batch: number of exposures B.
        n: instants on each side of the reference.
        fps: frame rate that spaces the instants.
        rot_speed: angular speed bounds, deg/s, log-uniform over the shake level.
        trans_speed: linear speed bounds, m/s.
        roll: spread of the rotation direction's roll component (pitch and yaw: 1).
    """
    dev = gen.device
    t = (torch.arange(2 * n + 1, device=dev, dtype=torch.float32) - n) / fps  # (T,)
    level = torch.rand(batch, generator=gen, device=dev).sqrt()  # density 2s

    def speed(lo_hi) -> torch.Tensor:
        lo, hi = math.log(lo_hi[0]), math.log(lo_hi[1])
        jitter = 0.3 * torch.randn(batch, generator=gen, device=dev)
        return torch.exp((lo + level * (hi - lo) + jitter).clamp(lo, hi))

    def path(mag: torch.Tensor, axis_scale: list[float]) -> torch.Tensor:
        scale = torch.tensor(axis_scale, device=dev)
        direction = torch.randn(batch, 3, generator=gen, device=dev) * scale
        vel = mag[:, None] * direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        acc = mag[:, None] * 3.0 * torch.randn(batch, 3, generator=gen, device=dev)
        f_tremor = uniform(gen, (batch,), 6.0, 12.0, dev)
        phase = uniform(gen, (batch,), 0.0, 2 * math.pi, dev)
        amp = (mag * uniform(gen, (batch,), 0.0, 0.3, dev) / (2 * math.pi * f_tremor))[:, None] * torch.randn(
            batch, 3, generator=gen, device=dev)
        wave = torch.sin(2 * math.pi * f_tremor[:, None] * t + phase[:, None]) - torch.sin(phase)[:, None]  # (B, T)
        return vel[:, None] * t[:, None] + 0.5 * acc[:, None] * t[:, None] ** 2 + amp[:, None] * wave[..., None]

    r = path(torch.deg2rad(speed(rot_speed)), [1.0, 1.0, roll])
    c = path(speed(trans_speed), [1.0, 1.0, 0.7])
    # T(t) = [R(r)^T | -R(r)^T c]: u = -r exactly, v = -R(r)^T c.
    R = axis_angle_to_rotation_matrix(r.reshape(-1, 3)).reshape(batch, 2 * n + 1, 3, 3)
    return -r, -(R.transpose(-1, -2) @ c[..., None])[..., 0]
