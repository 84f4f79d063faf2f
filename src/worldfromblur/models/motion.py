"""The motion-head interface: every motion module returns a :class:`MotionOutput`, states its own supervised loss,
and turns its output into poses, so that the cycle, the trainer and the reconstruction never ask which head it is.

A head is an ``nn.Module`` with

* ``forward(blurred, reference) -> MotionOutput``: the network's raw output (what training differentiates);
* ``loss(out, batch, reversal) -> (total, details)``: its stage-1 loss against a batch's ground truth;
* ``estimate(out, depth, K) -> MotionOutput``: the same output with the poses ``u``, ``v`` filled in (for a head that
  regresses poses, the output as it is; for the per-pixel path head, the poses solved from its paths).

:func:`worldfromblur.models.cycle.build_motion` is the factory that picks a head by the config's ``motion`` name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from ..losses import Reversal, motion_loss


@dataclass
class MotionOutput:
    """What a motion head says about the exposure. Every field is optional; a head fills what it has.

    Attributes:
        u: (B, 2n, 3) axis-angle rotations of the reference-to-instant poses, radians (the paper's u).
        v: (B, 2n, 3) translations of those poses, metres (the paper's v).
        displacement: (B, 2n, 2, H, W) where each reference pixel moves at each instant, pixels (path head).
        log_scale: (B, 1, H, W) log of the Laplace scale of that displacement's error (path head).
        paths: (B, 2n, 2, H, W) pixel coordinates of each reference pixel at each instant (path head, after
            :meth:`estimate`).
        degenerate: (B, 2n) bool, poses the scene does not determine (path head, after :meth:`estimate`).
    """

    u: torch.Tensor | None = None
    v: torch.Tensor | None = None
    displacement: torch.Tensor | None = None
    log_scale: torch.Tensor | None = None
    paths: torch.Tensor | None = None
    degenerate: torch.Tensor | None = None

    def as_dict(self) -> dict:
        """The fields that are set, by name (the keys of the model's output dict)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


class PoseRegression(nn.Module):
    """Base of the heads that regress the 2n poses directly (the LSTM heads): ``forward`` returns ``u`` and ``v``."""

    def loss(self, out: MotionOutput, batch: dict, reversal: Reversal = "min") -> tuple[torch.Tensor, dict]:
        return motion_loss(out.u, out.v, batch["poses"], reversal)

    def estimate(self, out: MotionOutput, depth: torch.Tensor | None = None, K: torch.Tensor | None = None) -> MotionOutput:
        return out
