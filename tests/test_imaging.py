"""Pixel values and light (worldfromblur.imaging): the sRGB curve, frame averaging, 8-bit conversion, PSNR."""

import numpy as np
import pytest
import torch

from worldfromblur.imaging import Exposure, blur_frames, linear_to_srgb, psnr, srgb_to_linear, to_uint8


def test_srgb_curve_matches_the_standard_and_inverts():
    # IEC 61966-2-1 reference points: the linear segment, the knee, mid-grey, white.
    x = np.array([0.0, 0.04045, 0.5, 1.0])
    assert srgb_to_linear(x) == pytest.approx([0.0, 0.04045 / 12.92, 0.21404114, 1.0], abs=1e-7)
    grid = np.linspace(0, 1, 1001)
    assert np.abs(linear_to_srgb(srgb_to_linear(grid)) - grid).max() < 1e-12
    assert np.array_equal(srgb_to_linear(np.array([-0.5, 1.5])), [0.0, 1.0])  # clipped to [0, 1] first
    t = torch.from_numpy(grid)
    assert torch.allclose(srgb_to_linear(t), torch.from_numpy(srgb_to_linear(grid)))  # torch and NumPy agree


def test_linear_to_srgb_has_a_finite_gradient_at_black():
    x = torch.tensor([0.0, 1e-4, 0.5], dtype=torch.float64, requires_grad=True)
    linear_to_srgb(x).sum().backward()
    assert torch.isfinite(x.grad).all()  # the power branch's infinite slope at 0 does not leak through
    assert float(x.grad[1]) == pytest.approx(12.92)  # the linear segment
    assert float(x.grad[2]) == pytest.approx(1.055 / 2.4 * 0.5 ** (1 / 2.4 - 1))


def test_blur_frames_averages_light_or_values():
    black, white = np.zeros((1, 2, 2)), np.ones((1, 2, 2))
    f = np.stack([black, white])
    assert float(blur_frames(f, averaging="srgb")[0, 0, 0]) == 0.5  # the paper's plain average
    assert float(blur_frames(f)[0, 0, 0]) == pytest.approx(float(linear_to_srgb(np.float64(0.5))))  # half the light
    w = blur_frames(f, averaging="srgb", weights=[3, 1])  # weights are normalised
    assert float(w[0, 0, 0]) == pytest.approx(0.25)
    batch = torch.rand(2, 5, 3, 4, 4)  # (B, T, C, H, W): time is dim 1
    assert blur_frames(batch, dim=1).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="weights must have shape"):
        blur_frames(f, weights=[1, 2, 3])


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([-0.1, 0.5, 0.999, 2.0])).tolist() == [0, 128, 255, 255]
    assert to_uint8(torch.tensor([0.5 / 255, 1.5 / 255])).tolist() == [0, 2]  # halves to even
    assert to_uint8(np.array([0.5 / 255, 1.5 / 255])).tolist() == [0, 2]


def test_psnr_of_known_errors():
    assert psnr(np.zeros(4), np.full(4, 0.1)) == pytest.approx(20.0)
    assert psnr(torch.zeros(2, 3), torch.full((2, 3), 0.01)) == pytest.approx(40.0)
    assert psnr(np.ones(3), np.ones(3)) == float("inf")


def test_one_exposure_description_with_one_default_each():
    """The synthetic engine, the RGB-D builders and the stream extend the same Exposure and keep its defaults;
    the model's config takes its n and averaging."""
    from dataclasses import fields

    from worldfromblur.data.rgbd import RGBDOptions
    from worldfromblur.data.stream import StreamOptions
    from worldfromblur.data.synthetic import SyntheticOptions
    from worldfromblur.models import ModelConfig

    base = Exposure()
    for cls in (SyntheticOptions, RGBDOptions, StreamOptions):
        assert issubclass(cls, Exposure)
        opts = cls()
        assert all(getattr(opts, f.name) == getattr(base, f.name) for f in fields(Exposure)), cls.__name__
    model = ModelConfig()
    assert model.n == base.n and model.averaging == base.averaging
