"""Hand-held camera shake drawn in torch, a batch at once, on the device that uses it.

:func:`draw_shake` is the synthetic engine's motion model (:func:`worldfromblur.data.synthetic.engine.draw_motion`,
described in that module: a shake level, log-uniform angular and linear speeds jittered around it, random
directions with weaker roll, an acceleration and a 6-12 Hz tremor) for B exposures at once, every random number from
one ``torch.Generator`` on the device. The NumPy version stays the engine's, so that datasets keep their samples;
``tests/data/test_stream.py`` checks that both draw the same distribution. The blur stream uses this one: no
per-sample Python loop and no host round trip during a training step.
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

ROLL_SCALE = 0.4
"""The engine's spread of a rotation direction's roll component against pitch and yaw (1); the streams draw with
0.7, the roll share measured on real hand-held video (docs/synthetic-data.md)."""


def uniform(gen: torch.Generator, shape: tuple, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


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
