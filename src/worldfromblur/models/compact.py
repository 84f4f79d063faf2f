"""The compact preset: the paper's inputs, outputs and cycle, at a size a 2-core CPU can train.

How it differs from the paper's modules (see ``paper.py``):

* **Deblurring**: a small U-Net (3 scales, 16-32-64 channels) that predicts a *residual* added to the blurred input,
  instead of CNN-L15's 15 full-resolution layers (a 19 x 19 first layer alone costs more than the whole preset).
* **Depth**: a U-Net of the same kind (4 scales, 24-48-96-128) on the (deblurred) image at half resolution,
  upsampled, with a softplus output above ``min_depth``, instead of the two-branch CNN-L15 + VGG network; the
  U-Net's coarse scales play branch (b)'s role of global context, and depth is smooth enough for half resolution.
* **Motion**: a strided CNN that sees the blurred and the reference image *together* (6 channels), so it can compare
  them pixel by pixel and locate the blur streaks, instead of two independent ResNet-152 feature vectors, which pool
  away exactly where and how far the image is smeared. The recurrent pose head is the paper's.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WfbError
from ..geometry import pixel_grid
from ..losses import Reversal, path_loss
from ..pose_solve import TRANSLATION_PRIOR, PoseSolve, solve_poses
from .heads import PoseLSTMHead
from .motion import MotionOutput, PoseRegression


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: (B, c_in, H, W) -> (B, c_out, H, W) for any H, W."""

    def __init__(self, c_in: int, c_out: int, widths: tuple[int, ...] = (24, 48, 96)):
        super().__init__()
        self.down = nn.ModuleList()
        c = c_in
        for i, w in enumerate(widths):
            self.down.append(conv_block(c, w, stride=1 if i == 0 else 2))
            c = w
        self.up = nn.ModuleList(conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.out = nn.Conv2d(widths[0], c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)


class CompactDeblur(nn.Module):
    """blurred (B, 3, H, W) in [0, 1] -> deblurred (B, 3, H, W) in [0, 1], as blurred + a bounded residual."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.net = UNet(3, 3, widths)
        # Start close to the identity: an untrained deblurring module should return its input, not noise.
        with torch.no_grad():
            self.net.out.weight.mul_(0.01)
            self.net.out.bias.zero_()

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        return (blurred + 0.5 * torch.tanh(self.net(blurred * 2 - 1))).clamp(0, 1)


class CompactDepth(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> metric z-depth (B, 1, H, W) > ``min_depth``."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 128), min_depth: float = 0.1, init_depth: float = 2.5,
                 scale: float = 0.5):
        super().__init__()
        self.net = UNet(3, 1, widths)
        self.min_depth = min_depth
        self.scale = scale
        # Start near a typical indoor depth rather than near the floor value.
        nn.init.constant_(self.net.out.bias, math.log(math.expm1(init_depth - min_depth)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image * 2 - 1
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="area" if self.scale < 1 else "bilinear")
        logits = F.interpolate(self.net(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return F.softplus(logits) + self.min_depth


class CompactMotion(PoseRegression):
    """(blurred, reference) -> u, v each (B, 2n, 3): one encoder over both images stacked, then the pose LSTM."""

    def __init__(self, n: int = 3, widths: tuple[int, ...] = (32, 64, 96, 128, 192), hidden: int = 256):
        super().__init__()
        layers, c = [], 6
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((3, 4)), nn.Flatten())
        self.head = PoseLSTMHead(c * 12, n, hidden)

    def forward(self, blurred: torch.Tensor, reference: torch.Tensor) -> MotionOutput:
        x = torch.cat([blurred, reference], dim=1) * 2 - 1
        u, v = self.head(self.encoder(x))
        return MotionOutput(u=u, v=v)


class CompactPathMotion(nn.Module):
    """(blurred, reference) -> where every reference pixel is at each of the 2n instants, and how sure that is.

    A U-Net over both images stacked predicts, per pixel, its displacement (pixels) at each instant,
    (B, 2n, 2, H, W), and the log of a Laplace scale (B, 1, H, W) of that displacement's error: the per-pixel
    motion head. The poses follow from the paths, the depth and K by :func:`worldfromblur.pose_solve.solve_poses`
    (:meth:`estimate`). Every pixel of every sample is a training signal, and the head works at any resolution.
    """

    def __init__(self, n: int = 3, widths: tuple[int, ...] = (32, 64, 128, 192), scale_px: float = 8.0):
        super().__init__()
        self.n, self.scale_px = n, scale_px
        self.net = UNet(6, 4 * n + 1, widths)
        with torch.no_grad():  # start from "no motion, unsure"
            self.net.out.weight.mul_(0.01)
            self.net.out.bias.zero_()

    def forward(self, blurred: torch.Tensor, reference: torch.Tensor) -> MotionOutput:
        y = self.net(torch.cat([blurred, reference], dim=1) * 2 - 1)
        B, _, H, W = y.shape
        displacement = y[:, : 4 * self.n].reshape(B, 2 * self.n, 2, H, W) * self.scale_px
        return MotionOutput(displacement=displacement, log_scale=y[:, 4 * self.n :].clamp(-5, 5))

    def loss(self, out: MotionOutput, batch: dict, reversal: Reversal = "min") -> tuple[torch.Tensor, dict]:
        return path_loss(out.displacement, out.log_scale, batch["poses"], batch["depth"], batch["K"],
                         batch.get("valid_depth"), reversal)

    @staticmethod
    def confidence(log_scale: torch.Tensor) -> torch.Tensor:
        """The pose solve's per-pixel weight: the inverse variance of the Laplace error, exp(-2 log b)."""
        return torch.exp(-2 * log_scale.float())

    def estimate(self, out: MotionOutput, depth: torch.Tensor | None = None, K: torch.Tensor | None = None,
                 translation_prior: float = TRANSLATION_PRIOR) -> MotionOutput:
        """The poses solved from the paths, the depth and ``K`` (with ``translation_prior``, see :meth:`solve`); also
        ``paths`` (pixel coordinates) and ``degenerate``."""
        if K is None or depth is None:
            raise WfbError("the per-pixel path motion head needs the intrinsics (and the depth): call predict(blurred, K)")
        H, W = depth.shape[-2:]
        paths = out.displacement.float() + pixel_grid(H, W, depth.float())[0].permute(2, 0, 1)
        sol = self.solve(paths, depth, K, self.confidence(out.log_scale), translation_prior)
        return MotionOutput(u=sol.u, v=sol.v, displacement=out.displacement, log_scale=out.log_scale, paths=paths,
                            degenerate=sol.degenerate)

    @staticmethod
    def solve(paths: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, confidence: torch.Tensor | None = None,
              translation_prior: float = TRANSLATION_PRIOR) -> PoseSolve:
        """:func:`~worldfromblur.pose_solve.solve_poses` of (B, 2n, 2, H, W) pixel paths with the settings
        :meth:`estimate` uses (every 2nd pixel, 6 iterations, the translation prior), in float32."""
        with torch.autocast(depth.device.type, enabled=False):
            return solve_poses(paths.float(), depth.float(), K.float(), confidence=confidence, stride=2, iterations=6,
                               translation_prior=translation_prior)
