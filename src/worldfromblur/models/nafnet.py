"""A NAFNet-class deblurring module (Chen, Chu, Zhang, Sun: "Simple Baselines for Image Restoration", ECCV 2022).

Our implementation of the published design: a U-Net whose every block is a *nonlinear-activation-free* block --
layer norm over channels, a 1x1 convolution that doubles the channels, a 3x3 depthwise convolution, a **simple
gate** (the two halves of the channels multiplied: the gating does the work of an activation), **simplified
channel attention** (global average pooling, a 1x1 convolution, a channel-wise product), a 1x1 convolution back,
and a learnt per-channel scale on the residual; then a gated feed-forward part of the same kind. Downsampling is a
strided 2x2 convolution that doubles the channels, upsampling a 1x1 convolution and a pixel shuffle that halves
them, skip connections are added, and the network predicts a residual on its input.

Two choices of ours: the residual scales start at zero and the last convolution at zero, so an untrained module
returns its input exactly (as the compact deblurrer does: an untrained deblurrer should not add noise); any image
size works (the input is padded to a multiple of 2^levels by reflection and the output cropped back).

Sizes (``ModelConfig.deblur_widths = [width]``, ``deblur_blocks = [enc_1, ..., enc_L, middle]``, one decoder block
per level): the GoPro model of the paper is width 32 with encoder blocks [1, 1, 1, 28] and 1 middle block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NAFNET_WIDTH = 16
"""Default width of the first level (channels double at every level)."""
NAFNET_BLOCKS = (1, 1, 1, 2, 1)
"""Default blocks per encoder level, then in the middle: small enough for photos on a CPU."""


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of every pixel, with a per-channel affine map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """The two halves of the channels, multiplied."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """x + beta * SCA-gated depthwise part(x); then + gamma * gated feed-forward part."""

    def __init__(self, c: int, expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        d = c * expand
        self.norm1 = LayerNorm2d(c)
        self.expand = nn.Conv2d(c, d, 1)
        self.depthwise = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.attention = nn.Conv2d(d // 2, d // 2, 1)  # simplified channel attention on the pooled features
        self.project = nn.Conv2d(d // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        f = c * ffn_expand
        self.ffn_in = nn.Conv2d(c, f, 1)
        self.ffn_out = nn.Conv2d(f // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = simple_gate(self.depthwise(self.expand(self.norm1(x))))
        y = y * self.attention(F.adaptive_avg_pool2d(y, 1))
        x = x + self.project(y) * self.beta
        y = self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))
        return x + y * self.gamma


class NAFNet(nn.Module):
    """blurred (B, 3, H, W) sRGB in [0, 1] -> deblurred, the same shape: a residual on the input."""

    def __init__(self, width: int = 16, enc_blocks: tuple[int, ...] = (1, 1, 1, 2), middle_blocks: int = 1):
        super().__init__()
        self.levels = len(enc_blocks)
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        for _ in enc_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(NAFBlock(c))
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.ending.weight)  # an untrained module returns its input
        nn.init.zeros_(self.ending.bias)

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        H, W = blurred.shape[-2:]
        m = 2**self.levels
        ph, pw = (-H) % m, (-W) % m
        x = blurred * 2 - 1
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(H, W) > max(ph, pw) else "replicate")
        x = self.intro(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(up(x) + skip)
        correction = self.ending(x)[..., :H, :W] / 2
        return (blurred + correction).clamp(0, 1)
