"""The paper's modules (section 4), as faithful as its text and the cited network definitions allow.

* :class:`CNNL15` — the deblurring module: Hradiš et al.'s CNN-L15 with the paper's changes (batch norm on every
  layer but the last, tanh output). Choices the paper leaves open: every convolution is padded by ``k // 2`` so the
  output has the input's size (the original used valid convolutions and a cropped target), and the tanh output
  ``t`` is read as an image in [-1, 1], i.e. ``deblurred = (t + 1) / 2``.
* :class:`TwoBranchDepth` — the depth module of Fig. 6: branch (a) is the CNN-L15 body (layers 1-14), branch (b)
  VGG-16's first six convolutions (64, 64, 128, 128, 256, 256 channels, two poolings) upsampled bilinearly to
  full size; both are concatenated (64 + 256 channels) and fed to a CNN-L15-shaped head whose last layer is a ReLU.
  ReLU can output exactly 0, which no camera can see and no warp can use, so ``min_depth`` (0.1 m) is added.
* :class:`ResNetLSTMMotion` — the motion module of Fig. 3: ResNet-152 pooled features (2048-d) of the blurred and of
  the reference image, concatenated, Linear 1, an LSTM run for 2n steps with shared weights, Linear 2 giving each
  pose as a rotation u and a translation v, and Linear 3 feeding the previous pose in as the next step's input.
* :class:`EigenCoarseFine` — Eigen, Puhrsch and Fergus (2014)'s coarse/fine depth network, for the paper's
  Tables 4-6: the coarse stack ends in an adaptive pooling to Eigen's 6 x 8 grid so the fully connected layers fit any
  input size, and its 55 x 74 output is resized to the fine branch's quarter resolution.

Backbones come from torchvision, untrained by default. ImageNet weights are used only when given: see
:func:`load_backbone_weights`. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from ..errors import WfbError
from .heads import PoseLSTMHead
from .motion import MotionOutput, PoseRegression

# CNN-L15 as published (Hradiš et al. 2015): kernel sizes, output channels, groups (1-indexed layers 8, 9, 11, 12, 14).
CNN_L15_KERNELS = (19, 1, 1, 1, 1, 3, 1, 5, 5, 3, 5, 5, 1, 7, 7)
CNN_L15_CHANNELS = (128, 320, 320, 320, 128, 128, 512, 128, 128, 128, 128, 128, 256, 64, 3)
CNN_L15_GROUPS = (1, 1, 1, 1, 1, 1, 1, 4, 2, 1, 2, 2, 1, 2, 1)


def cnn_l15_layers(in_channels: int, out_channels: int = 3) -> nn.ModuleList:
    """The 15 convolutions of CNN-L15 (padded to keep the size); batch norm + ReLU after all but the last."""
    layers = nn.ModuleList()
    c_in = in_channels
    channels = CNN_L15_CHANNELS[:-1] + (out_channels,)
    for i, (k, c, g) in enumerate(zip(CNN_L15_KERNELS, channels, CNN_L15_GROUPS)):
        conv = nn.Conv2d(c_in, c, k, padding=k // 2, groups=g, bias=i == len(channels) - 1)
        if i < len(channels) - 1:
            layers.append(nn.Sequential(conv, nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
        else:
            layers.append(conv)
        c_in = c
    return layers


class CNNL15(nn.Module):
    """Deblurring: blurred (B, 3, H, W) in [0, 1] -> deblurred (B, 3, H, W) in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.layers = cnn_l15_layers(3, 3)

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        x = blurred * 2 - 1
        for layer in self.layers:
            x = layer(x)
        return (torch.tanh(x) + 1) / 2


def vgg16_first_six_convs() -> nn.Sequential:
    """VGG-16 up to conv3_2 (+ ReLU): 256 channels at a quarter of the input size."""
    import torchvision  # here, not at the top: importing it costs a second that inference never needs

    features = torchvision.models.vgg16(weights=None).features
    return nn.Sequential(*list(features.children())[:14])


class TwoBranchDepth(nn.Module):
    """Depth of Fig. 6: image (B, 3, H, W) in [0, 1] -> metric z-depth (B, 1, H, W) >= ``min_depth``."""

    def __init__(self, min_depth: float = 0.1):
        super().__init__()
        self.branch_a = cnn_l15_layers(3, 3)[:-1]  # layers 1-14: 64 channels at full size
        self.branch_b = vgg16_first_six_convs()
        self.head = cnn_l15_layers(64 + 256, 1)
        self.min_depth = min_depth
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        a = image * 2 - 1
        for layer in self.branch_a:
            a = layer(a)
        b = self.branch_b((image - self.mean) / self.std)
        b = F.interpolate(b, size=image.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([a, b], dim=1)
        for layer in self.head:
            x = layer(x)
        return F.relu(x) + self.min_depth


class ResNetLSTMMotion(PoseRegression):
    """Motion of Fig. 3: (blurred, reference) -> u, v each (B, 2n, 3), in time order (reference excluded)."""

    def __init__(self, n: int = 3, hidden: int = 512):
        super().__init__()
        import torchvision

        resnet = torchvision.models.resnet152(weights=None)
        resnet.fc = nn.Identity()  # the 2048-d pooled feature, the input of ResNet's last fully connected layer
        self.backbone = resnet
        self.head = PoseLSTMHead(2 * 2048, n, hidden)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, blurred: torch.Tensor, reference: torch.Tensor) -> MotionOutput:
        B = blurred.shape[0]
        feats = self.backbone((torch.cat([blurred, reference]) - self.mean) / self.std)
        u, v = self.head(torch.cat([feats[:B], feats[B:]], dim=1))
        return MotionOutput(u=u, v=v)


class EigenCoarseFine(nn.Module):
    """Eigen et al. 2014: image (B, 3, H, W) in [0, 1] -> z-depth (B, 1, H, W), predicted in log space."""

    def __init__(self, min_depth: float = 0.1):
        super().__init__()
        self.coarse = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4, padding=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((6, 8)), nn.Flatten(),
            nn.Linear(256 * 6 * 8, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 55 * 74),
        )
        self.fine1 = nn.Sequential(nn.Conv2d(3, 63, 9, stride=2, padding=4), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.fine2 = nn.Sequential(nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(inplace=True), nn.Conv2d(64, 1, 5, padding=2))
        self.min_depth = min_depth

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image * 2 - 1
        fine = self.fine1(x)  # quarter size
        coarse = self.coarse(x).view(-1, 1, 55, 74)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        log_depth = self.fine2(torch.cat([fine, coarse], dim=1))
        log_depth = F.interpolate(log_depth, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return torch.exp(log_depth.clamp(-5, 5)) + self.min_depth


def load_backbone_weights(module: nn.Module, path: str | Path) -> None:
    """Load torchvision ImageNet weights for a backbone from a local file (safetensors, or a ``weights_only``
    PyTorch state dict such as the files in torchvision's cache). Unknown keys are ignored; missing ones reported."""
    path = Path(path)
    if not path.is_file():
        raise WfbError(f"{path}: backbone weights not found")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise WfbError(f"{path}: no tensor in this file fits the backbone; is it the right network's weights?")
    module.load_state_dict(usable, strict=False)
