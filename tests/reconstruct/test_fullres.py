"""Outputs at the photo's own size: tiling, multi-scale deblurring, guided depth upsampling, the caps, EXIF focal
plane intrinsics, and the chunked re-blur of large images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from worldfromblur import geometry
from worldfromblur.cli.main import main
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.fullres import (
    _spans,
    deblur_full,
    fusion_scales,
    output_size,
    tiled,
    upsample_depth,
)
from worldfromblur.reconstruct.photo import intrinsics_for, load_photo

from .test_reconstruct import EXAMPLE


@pytest.fixture(scope="module")
def model():
    return load_model(shipped_model())[0].eval()


def _photo(path, size):
    Image.open(EXAMPLE).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def test_a_1280x720_photo_comes_back_at_1280x720(tmp_path, capsys):
    photo = _photo(tmp_path / "wide.png", (1280, 720))
    assert main(["reconstruct", str(photo), "--out", str(tmp_path / "out"), "--max-points", "200000",
                 "--intrinsics", "1000", "1000", "639.5", "359.5", "--quiet"]) == 0
    out = tmp_path / "out" / "wide"
    for name in ("deblurred.png", "depth.png", "depth_vis.png", "reblurred.png", "frames/00.png", "frames/06.png"):
        with Image.open(out / name) as im:
            assert im.size == (1280, 720), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["output_size"] == [1280, 720] and summary["deblur_scales"] == [1, 2, 4]
    assert summary["working_size"][0] * summary["working_size"][1] < 25_000
    assert summary["K"][0][0] == pytest.approx(1000) and math.isfinite(summary["reblur_psnr_db"])
    assert json.loads((out / "poses.json").read_text())["size"] == [1280, 720]
    # The cloud is capped: it comes from the outputs reduced to at most 200,000 pixels.
    with open(out / "points.ply", "rb") as f:
        header = f.read(400).decode("ascii", "replace")
    count = int(header.split("element vertex ")[1].split()[0])
    assert 150_000 < count <= 200_000 and summary["points"] == count
    assert "over --max-pixels" not in capsys.readouterr().err


def test_max_pixels_reduces_a_large_photo_and_says_so(tmp_path, capsys):
    photo = _photo(tmp_path / "big.png", (640, 480))
    assert main(["reconstruct", str(photo), "--out", str(tmp_path / "out"), "--max-pixels", "1e5", "--quiet"]) == 0
    w, h = output_size(640, 480, 100_000)
    assert w * h <= 100_000 and abs(w / h - 4 / 3) < 0.01 and w * h > 99_000
    with Image.open(tmp_path / "out" / "big" / "deblurred.png") as im:
        assert im.size == (w, h)
    assert f"outputs are at {w}x{h}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--max-pixels", "0"], "--max-pixels"),
    (["--max-points", "1.5"], "--max-points"),
    (["--tile", "50"], "--tile must be 0"),
])
def test_bad_size_options_are_refused_before_anything_is_written(tmp_path, argv, message, capsys):
    try:  # argparse exits for a malformed number; a checked option's error returns 2
        code = main(["reconstruct", str(EXAMPLE), "--out", str(tmp_path / "out"), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_size_keeps_small_photos_and_the_aspect_ratio():
    assert output_size(1280, 720) == (1280, 720)
    w, h = output_size(4000, 3000)
    assert w * h <= 4_000_000 and abs(w / h - 4 / 3) < 1e-3


@pytest.mark.parametrize("length, tile, overlap", [(1280, 1024, 64), (720, 256, 64), (3000, 1024, 64), (300, 512, 64)])
def test_tiles_cover_the_image_with_the_overlap(length, tile, overlap):
    spans = _spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
    assert all(size <= tile for _, size in spans)
    for (a, sa), (b, _) in zip(spans, spans[1:]):
        assert a + sa - b >= overlap


def test_tiled_and_untiled_deblurring_agree_away_from_tile_borders(model):
    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 480, 720), 5, 1, 2)
    tile, overlap = 256, 64
    with torch.no_grad():
        whole, parts = model.deblur(x), tiled(model.deblur, x, tile, overlap)
    diff = (whole - parts).abs().amax(1)[0]
    far = torch.ones_like(diff, dtype=torch.bool)  # pixels farther than the overlap from every inner tile edge
    for axis, length in ((0, 480), (1, 720)):
        for start, size in _spans(length, tile, overlap):
            for edge in (start, start + size):
                if 0 < edge < length:
                    sl = [slice(None), slice(None)]
                    sl[axis] = slice(max(edge - overlap, 0), edge + overlap)
                    far[tuple(sl)] = False
    assert far.float().mean() > 0.05
    assert diff[far].max() < 1e-4  # the same result, to float rounding
    assert diff.mean() < 5e-3 and diff.max() < 0.05  # and no seam anywhere


def test_deblur_full_uses_the_scales_above_the_working_size(model):
    assert fusion_scales((1280, 720), 19_200) == [1, 2, 4]
    assert fusion_scales((320, 240), 19_200) == [1, 2]
    assert fusion_scales((160, 120), 19_200) == [1]
    x = torch.rand(1, 3, 120, 160)
    with torch.no_grad():
        one, scales = deblur_full(model.deblur, x, 19_200)
        assert scales == [1] and torch.equal(one, model.deblur(x))  # at the working size: the network's own output
        two, scales = deblur_full(model.deblur, torch.rand(1, 3, 240, 320), 19_200)
    assert scales == [1, 2] and two.shape == (1, 3, 240, 320) and 0 <= two.min() and two.max() <= 1


def test_depth_upsampling_puts_depth_edges_on_image_edges():
    H, W, f = 240, 320, 4
    guide = torch.zeros(1, 3, H, W)
    guide[..., 163:] = 1.0  # an image edge at x = 163, between two working-size pixels
    depth_full = torch.where(guide[:, :1] > 0.5, torch.tensor(4.0), torch.tensor(1.0))
    depth = torch.nn.functional.interpolate(depth_full, size=(H // f, W // f), mode="area")
    bilinear = torch.nn.functional.interpolate(depth, size=(H, W), mode="bilinear", align_corners=False)
    guided = upsample_depth(depth, guide)
    assert guided.shape == (1, 1, H, W)
    assert depth.min() - 1e-5 <= guided.min() and guided.max() <= depth.max() + 1e-5
    band = slice(150, 176)
    err_b = (bilinear - depth_full)[..., band].abs().mean()
    err_g = (guided - depth_full)[..., band].abs().mean()
    assert err_g < 0.01 * err_b  # a step between two planes comes back (almost) exact
    assert upsample_depth(depth, torch.rand(1, 3, H // f, W // f)) is depth


def test_focal_length_from_the_focal_plane_resolution(tmp_path):
    im = Image.fromarray(np.zeros((60, 80, 3), np.uint8))
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = 4.0  # FocalLength, mm
    ifd[0xA20E] = 1000.0  # FocalPlaneXResolution: 1000 pixels per centimetre ...
    ifd[0xA210] = 3  # ... (unit 3 = cm): 100 px/mm, so f = 400 px at the capture width
    ifd[0xA002] = 160  # PixelXDimension: the photo was taken 160 wide and saved at 80, so f = 200 px here
    im.save(tmp_path / "a.jpg", exif=exif)
    K, source = intrinsics_for(load_photo(tmp_path / "a.jpg"))
    assert source == "exif-focal-plane" and K[0, 0] == pytest.approx(200) and K[1, 1] == pytest.approx(200)
    del ifd[0xA20E]
    im.save(tmp_path / "b.jpg", exif=exif)
    assert intrinsics_for(load_photo(tmp_path / "b.jpg"))[1] == "default"


def test_a_large_reblur_is_warped_in_groups_with_the_same_result(monkeypatch):
    torch.manual_seed(1)
    image, depth = torch.rand(1, 3, 48, 64), 1 + torch.rand(1, 1, 48, 64)
    u = torch.tensor([[[0.0, 0.01 * k, 0.002 * k] for k in (-3, -2, -1, 1, 2, 3)]])
    poses = geometry.pose_from_uv(u, 0.01 * u)
    K = torch.tensor([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    once, valid_once = geometry.reblur(image, depth, poses, K, subframes=2, averaging="linear", return_valid=True)
    monkeypatch.setattr(geometry, "REBLUR_CHUNK_PIXELS", 3 * 48 * 64)
    groups, valid_groups = geometry.reblur(image, depth, poses, K, subframes=2, averaging="linear", return_valid=True)
    torch.testing.assert_close(groups, once, atol=1e-6, rtol=0)
    assert torch.equal(valid_groups, valid_once)
