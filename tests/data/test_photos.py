"""The photo stream: blurred crops of real photographs made on the device (rotation homographies in linear light,
clipped highlights, noise, JPEG), its checks, and the deblur stage trained from it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldfromblur.cli.main import main
from worldfromblur.data.format import DatasetError
from worldfromblur.data.photos import (
    PhotoOptions,
    PhotoStream,
    find_photos,
    load_photos,
    margin,
    path_lengths,
    rotate_and_average,
    split_photos,
)

SHARED_RGB = Path(__file__).resolve().parents[3] / "shared" / "data" / "tum-layout-7scenes-sample" / "rgb"


def write_photos(folder: Path, count: int, size=(200, 150), seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = write_photos(tmp_path_factory.mktemp("photos") / "a", 4)
    return load_photos(find_photos([folder]), 64, margin(PhotoOptions(crop=64, max_blur_px=24)), progress=False)


def clean(**kw) -> PhotoOptions:
    return PhotoOptions(**{"crop": 64, "max_blur_px": 24.0, "noise": 0.0, "jpeg": 0.0, "highlights": 0.0,
                           "gain": [1, 1], **kw})


def test_a_rotation_moves_the_image_by_its_homography():
    """One instant turned by a small yaw about the camera's y axis shifts a vertical edge by f * tan(angle)."""
    H, W, f = 32, 64, 100.0
    img = torch.zeros(1, 3, H, W)
    img[..., 32:] = 1.0
    K = torch.tensor([[[f, 0, 31.5], [0, f, 15.5], [0, 0, 1]]])
    angle = 0.05
    u = torch.tensor([0.0, angle, 0.0]).expand(1, 2, 3).clone()  # both instants turned: no blur, a shift
    moved, valid = rotate_and_average(img, u, K, subframes=1)
    edge = float(moved[0, 0, 16].sum())  # columns still dark = where the edge went
    shift = (W - edge) - 32
    assert abs(abs(shift) - f * np.tan(angle)) < 0.6, shift
    assert float(valid[0, 0, :, :3].mean()) < 1 or float(valid[0, 0, :, -3:].mean()) < 1  # a side left the view
    # over the left 32 columns the longest path is at their outer edge, 31.5 px left of the centre, where the
    # point turns towards the optical axis: x' = f tan(angle - a) for tan(a) = 31.5 / f
    length = path_lengths(torch.stack([torch.zeros(3), torch.tensor([0.0, angle, 0.0])])[None], K, 0, 32)
    a = np.arctan(31.5 / f)
    longest = f * (np.tan(angle - a) + np.tan(a))
    assert abs(float(length) - longest) < 0.05, (float(length), longest)


def test_photo_batches_are_pure_blurred_crops_with_8_bit_values(photos):
    s = PhotoStream(photos, PhotoOptions(crop=64, max_blur_px=24.0), seed=4)
    a, b = s.batch(2, 6), s.batch(2, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blurred"], s.batch(3, 6)["blurred"])
    assert not torch.equal(a["blurred"], s.batch(2, 6, rank=1)["blurred"])
    assert a["blurred"].shape == a["sharp"].shape == (6, 3, 64, 64) and a["valid_blur"].shape == (6, 1, 64, 64)
    for key in ("blurred", "sharp"):
        assert torch.equal(torch.round(a[key] * 255) / 255, a[key])
    lengths = torch.cat([s.batch(k, 8)["blur_px"] for k in range(6)])
    assert float(lengths.min()) < 2.0 and 12.0 < float(lengths.max()) <= 24.0 * 1.05


def test_a_still_exposure_is_its_sharp_crop_and_more_blur_is_blurrier(photos):
    still = PhotoStream(photos, clean(max_blur_px=0.0), seed=0).batch(0, 4)
    assert (still["blurred"] - still["sharp"]).abs().max() <= 1.5 / 255

    def sharpness(max_blur):
        b = PhotoStream(photos, clean(max_blur_px=max_blur, still=0.0), seed=0).batch(0, 8)
        grad = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()
        return float(grad(b["blurred"]) / grad(b["sharp"]))

    assert sharpness(24.0) < sharpness(4.0) < 1.0


def test_bright_lights_streak_after_integration(photos):
    """A white dot on black: brightened before the average and clipped after, its streak is brighter than the
    plain average of the clipped photo's instants (a real sensor's light streak)."""
    dot = torch.zeros(1, 3, 33, 33)
    dot[..., 16, 16] = 1.0
    K = torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]])
    u = torch.tensor([[[0.0, -0.05, 0.0], [0.0, 0.0, 0.0], [0.0, 0.05, 0.0]]])
    plain, _ = rotate_and_average(dot, u, K, subframes=4)
    boosted, _ = rotate_and_average(dot * 6, u, K, subframes=4)
    assert float(plain.max()) < 0.5 and float(boosted.clamp(0, 1).max()) > 2 * float(plain.max())
    s = PhotoStream(photos, clean(highlights=1.0), seed=0)
    assert torch.isfinite(s.batch(0, 4)["blurred"]).all()


def test_jpeg_and_noise_reach_the_blurred_image_only(photos):
    base = PhotoStream(photos, clean(max_blur_px=0.0), seed=1).batch(0, 4)
    jpeg = PhotoStream(photos, clean(max_blur_px=0.0, jpeg=1.0, jpeg_quality=[20, 20]), seed=1).batch(0, 4)
    assert torch.equal(base["sharp"], jpeg["sharp"])
    assert float((jpeg["blurred"] - base["blurred"]).abs().mean()) > 1 / 255


def test_photo_folders_fail_in_one_line_before_training(tmp_path):
    with pytest.raises(DatasetError, match="no such photo folder"):
        find_photos([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="holds no photographs"):
        find_photos([tmp_path / "empty"])
    small = write_photos(tmp_path / "small", 3, size=(80, 60))
    with pytest.raises(DatasetError, match="3 of 3 photos .* smaller than a 64x64 crop"):
        load_photos(find_photos([small]), 64, 10, progress=False)
    (small / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png: cannot be read"):
        load_photos(find_photos([small]), 16, 0, progress=False)
    train, held = split_photos([write_photos(tmp_path / "ten", 10)], 0.2)
    assert len(train) == 8 and [p.name for p in held] == ["p08.png", "p09.png"]
    with pytest.raises(DatasetError, match="jpeg_quality"):
        PhotoOptions(jpeg_quality=[0, 101]).check()


def test_wfb_train_model_refuses_bad_photo_runs_in_one_line(tmp_path, capsys):
    folder = write_photos(tmp_path / "p", 4, size=(80, 60))
    cases = [
        ([f"data.photos=[{tmp_path / 'none'}]"], "no such photo folder"),
        ([f"data.photos=[{folder}]"], "smaller than a 256x256 crop"),
        ([f"data.photos=[{folder}]", "stage=depth"], "trains the deblur stage only"),
        (["data.photos=[]"], "needs data.photos"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        code = main(["train", "compact-deblur", "--quiet", "data.source=photos", f"out={out}", *args])
        err = capsys.readouterr().err
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (out / "checkpoints").exists()


def test_the_deblur_stage_trains_on_real_photos_and_is_scored_on_held_out_ones(tmp_path):
    """The shipped photo recipe on real camera frames: trains, exports, and scores deblurring on held-out photos."""
    folder = SHARED_RGB if SHARED_RGB.is_dir() else write_photos(tmp_path / "photos", 20, size=(160, 120))
    out = tmp_path / "run"
    code = main(["train-model", "deblur-photos", "--out", str(out), "--minutes", "0.6", "--quiet",
                 f"data.photos=[{folder}]", "data.photo={crop: 48, max_blur_px: 16}", "data.pool=[synthetic:4]",
                 "data.held_out=0.1", "batch_size=4", "model.deblur_widths=[8]", "evaluate.samples=8",
                 "evaluate.batch_size=4"])
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["data"] == "held-out photos" and report["held_out_photos"] >= 2
    assert np.isfinite(report["models"]["model"]["image"]["psnr"])
    assert (out / "model" / "model.safetensors").is_file()


def test_large_photos_are_shrunk_by_area_to_max_pixels(tmp_path):
    """A folder of large photos fits in memory: each is shrunk to max_pixels by area in linear light, keeping its
    aspect and its mean light."""
    folder = write_photos(tmp_path / "big", 2, size=(200, 150))
    full = load_photos(find_photos([folder]), 16, 0, progress=False)
    small = load_photos(find_photos([folder]), 16, 0, progress=False, max_pixels=7500)
    assert [tuple(p.shape) for p in full] == [(150, 200, 3)] * 2
    assert [tuple(p.shape) for p in small] == [(75, 100, 3)] * 2
    lin = lambda p: (p.float() / 255).pow(2.2).mean()  # near enough to sRGB for a mean
    assert all(abs(float(lin(a) - lin(b))) < 0.01 for a, b in zip(full, small))
    with pytest.raises(DatasetError, match="max_pixels"):
        PhotoOptions(max_pixels=-1).check()
