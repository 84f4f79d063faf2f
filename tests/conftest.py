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


def run_folder(path: Path, model):
    """A checkpoint folder of ``model`` (``model.safetensors`` + ``config.yaml``), as a training run leaves it."""
    import yaml
    from safetensors.torch import save_file

    path.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / "config.yaml").write_text(yaml.safe_dump({"model": model.cfg.to_dict()}))
    return model


def textured_frame(H: int, W: int, seed: int, cells: tuple[int, ...]) -> torch.Tensor:
    """(1, 3, H, W) float64 in [0, 1]: random noise smoothed at several scales (``cells`` across), a texture every
    part of which a rotation can be measured on."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, H, W, dtype=torch.float64)
    for c in cells:
        noise = torch.rand(1, 3, H * c // W + 2, c + 2, generator=g, dtype=torch.float64)
        img += F.interpolate(noise, size=(H, W), mode="bicubic", align_corners=False)
    return (img - img.amin()) / (img.amax() - img.amin())


@pytest.fixture(scope="session")
def rotating_video(tmp_path_factory) -> tuple[Path, np.ndarray, float]:
    """A 'high-frame-rate video' of a textured scene seen by a camera that turns at a constant rate: 33 frames of
    320 x 180 (PNG), the rotation axis and the degrees it turns per frame."""
    from worldfromblur.evaluation.video import intrinsics_of, warp_by_rotation

    folder = tmp_path_factory.mktemp("video") / "frames"
    folder.mkdir()
    H, W = 180, 320
    texture = textured_frame(H, W, seed=4, cells=(6, 24, 96))
    axis, per_frame = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8]), 0.15
    K = intrinsics_of(H, W)
    for k in range(33):
        u = torch.as_tensor(axis * np.radians(per_frame * (k - 16)))
        image = (warp_by_rotation(texture, u, K)[0][0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{k:06d}.png")
    return folder, axis, per_frame
