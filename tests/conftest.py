"""Fixtures shared by several test files."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic


@pytest.fixture(scope="session")
def dataset20(tmp_path_factory) -> Path:
    """20 synthetic samples with the defaults a user gets (320x240), built once per test session."""
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    run_build(root, plan_synthetic(SyntheticOptions(), 20, 3), workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def rotating_video(tmp_path_factory) -> tuple[Path, np.ndarray, float]:
    """A 'high-frame-rate video' of a textured scene seen by a camera that turns at a constant rate: 33 frames of
    320 x 180 (PNG), the rotation axis and the degrees it turns per frame."""
    from worldfromblur.evaluation.video import intrinsics_of, warp_by_rotation

    folder = tmp_path_factory.mktemp("video") / "frames"
    folder.mkdir()
    H, W = 180, 320
    g = torch.Generator().manual_seed(4)
    texture = torch.zeros(1, 3, H, W, dtype=torch.float64)
    for cells in (6, 24, 96):
        noise = torch.rand(1, 3, H * cells // W + 2, cells + 2, generator=g, dtype=torch.float64)
        texture += F.interpolate(noise, size=(H, W), mode="bicubic", align_corners=False)
    texture = (texture - texture.amin()) / (texture.amax() - texture.amin())
    axis, per_frame = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8]), 0.15
    K = intrinsics_of(H, W)
    for k in range(33):
        u = torch.as_tensor(axis * np.radians(per_frame * (k - 16)))
        frame = torch.cat([warp_by_rotation(texture[:, c:c + 1], u, K)[0] for c in range(3)], dim=1)
        image = (frame[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{k:06d}.png")
    return folder, axis, per_frame
