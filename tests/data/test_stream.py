"""Frame pools and the on-the-fly blur stream: files, splits, geometry of the augmentation, blur range, determinism."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldfromblur.cli.main import main
from worldfromblur.data.format import DatasetError
from worldfromblur.data.pool import FramePool, load_pool, save_pool, synthetic_pool
from worldfromblur.data.shake import draw_shake
from worldfromblur.data.stream import BlurStream, StreamOptions
from worldfromblur.data.synthetic.engine import SyntheticOptions, draw_motion
from worldfromblur.losses import deblur_loss, depth_loss


def ramp_pool(W0=80, H0=60, sources=("a",), per_source=1) -> FramePool:
    """Frames whose depth encodes the pixel column: depth = 1 + x / W0 (to check where a stream pixel came from)."""
    N = len(sources) * per_source
    x = torch.arange(W0, dtype=torch.float32)
    depth = (1 + x / W0).expand(N, H0, W0).clone()
    rgb = torch.randint(0, 256, (N, H0, W0, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    K = torch.tensor([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]], dtype=torch.float64).expand(N, 3, 3).clone()
    src = [s for s in sources for _ in range(per_source)]
    return FramePool(rgb, depth, K, [f"{s}-{i}" for i, s in enumerate(src)], src)


@pytest.fixture(scope="module")
def small_pool() -> FramePool:
    return synthetic_pool(6, size=(96, 72), seed=1, progress=False)


def test_synthetic_pool_frames_are_sharp_rgbd_with_positive_depth(small_pool):
    assert small_pool.rgb.shape == (6, 72, 96, 3) and small_pool.rgb.dtype == torch.uint8
    assert bool((small_pool.depth > 0.3).all()) and small_pool.size == (96, 72)
    again = synthetic_pool(2, size=(96, 72), seed=1, progress=False)  # a pure function of (seed, index)
    assert torch.equal(again.rgb, small_pool.rgb[:2])


def test_pool_files_round_trip_and_are_never_overwritten(small_pool, tmp_path):
    save_pool(small_pool, tmp_path / "pool")
    back = load_pool(tmp_path / "pool")
    assert torch.equal(back.rgb, small_pool.rgb)  # PNG: lossless
    assert torch.allclose(back.depth, small_pool.depth, atol=5e-4)  # millimetres
    assert torch.allclose(back.K, small_pool.K, atol=1e-6) and back.sources == small_pool.sources
    with pytest.raises(DatasetError, match="never overwritten"):
        save_pool(small_pool, tmp_path / "pool")
    assert torch.equal(load_pool(tmp_path / "pool").rgb, small_pool.rgb)


def test_bad_pools_fail_in_one_line(small_pool, tmp_path):
    with pytest.raises(DatasetError, match="not a frame pool"):
        load_pool(tmp_path)
    save_pool(small_pool, tmp_path / "p")
    (tmp_path / "p" / "rgb" / "000002.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="000002.png is missing or unreadable"):
        load_pool(tmp_path / "p")
    with pytest.raises(DatasetError, match="empty"):
        FramePool(torch.zeros(0, 4, 4, 3, dtype=torch.uint8), torch.zeros(0, 4, 4), torch.zeros(0, 3, 3), [], [])
    no_depth = ramp_pool()
    no_depth.depth.zero_()
    with pytest.raises(DatasetError, match="depth on fewer than 5%"):
        FramePool(no_depth.rgb, no_depth.depth, no_depth.K, no_depth.names, no_depth.sources)


def test_split_holds_out_the_last_frames_of_each_source():
    pool = ramp_pool(sources=("a", "b"), per_source=10)
    train, held = pool.split(0.2)
    assert held.names == ["a-8", "a-9", "b-18", "b-19"] and len(train) == 16
    assert set(train.names).isdisjoint(held.names)
    assert pool.split(0)[1] is None


def test_repeated_pool_entries_never_leak_held_out_frames(tmp_path):
    from worldfromblur.data.pool import build_pool

    save_pool(ramp_pool(sources=("a",), per_source=10), tmp_path / "p")
    train, held = build_pool([str(tmp_path / "p") + "*3"], held_out=0.2, progress=False)
    assert len(train) == 24 and len(held) == 2
    assert set(train.names).isdisjoint(held.names)
    with pytest.raises(Exception, match="whole number"):
        build_pool([str(tmp_path / "p") + "*x"], progress=False)


def test_gathering_pools_copies_the_chosen_frames_in_order():
    from worldfromblur.data.pool import gather_pools

    a, b = ramp_pool(sources=("a",), per_source=5), ramp_pool(sources=("b",), per_source=4)
    b = FramePool(b.rgb, b.depth.double(), b.K, b.names, b.sources)  # another depth type: cast to the first's
    out = gather_pools([(a, [4, 0]), (b, range(4)), (a, [2])])
    assert out.names == [a.names[4], a.names[0], *b.names, a.names[2]] and out.sources == ["a", "a"] + ["b"] * 4 + ["a"]
    assert torch.equal(out.rgb[0], a.rgb[4]) and torch.equal(out.rgb[2:6], b.rgb) and torch.equal(out.K[6], a.K[2])
    assert out.depth.dtype == a.depth.dtype and torch.equal(out.depth[2:6], b.depth.to(a.depth.dtype))
    assert torch.equal(gather_pools([(a, range(5)), (a, range(5))]).rgb, torch.cat([a.rgb, a.rgb]))
    with pytest.raises(DatasetError, match="different frame sizes"):
        gather_pools([(a, [0]), (ramp_pool(32, 24), [0])])


def test_pool_depth_filled_in_chunks_is_filled_as_a_whole(monkeypatch):
    """Depth holes are filled a few frames at a time (memory); each frame is filled on its own, so chunks give
    exactly the whole-pool result, even where frames need pyramids of different depths."""
    from worldfromblur.data import exposure

    g = torch.Generator().manual_seed(0)
    depth = torch.rand(150, 40, 50, generator=g) + 0.5
    depth[torch.rand(150, 40, 50, generator=g) < 0.3] = 0
    depth[3, :30] = 0  # a frame with a large hole
    chunked = exposure.fill_holes(depth)
    monkeypatch.setattr(exposure, "FILL_CHUNK", 1000)  # the whole pool at once
    assert torch.equal(chunked, exposure.fill_holes(depth))
    assert bool((chunked > 0).all())


def test_held_out_frames_alone_are_the_ones_a_split_holds_out(tmp_path):
    from worldfromblur.data.pool import build_pool

    save_pool(ramp_pool(320, 240, sources=("a",), per_source=10), tmp_path / "p")  # synthetic:N frames are 320x240
    specs = ["synthetic:8", str(tmp_path / "p")]
    _, held = build_pool(specs, held_out=0.25, progress=False)
    train, alone = build_pool(specs, held_out=0.25, progress=False, held_out_only=True)
    assert train is None and alone.names == held.names
    assert torch.equal(alone.rgb, held.rgb) and torch.equal(alone.depth, held.depth)


@pytest.mark.parametrize("flip", [False, True])
def test_crops_zooms_and_flips_keep_the_intrinsics_true(flip):
    """Each stream pixel's depth must come from the pool pixel that its K says it sees."""
    pool = ramp_pool()
    W0 = pool.size[0]
    opts = StreamOptions(size=[48, 32], zoom=[1.0, 1.6], flip=flip, max_blur_px=0.0, still=0.0, noise=0.0)
    stream = BlurStream(pool, opts, seed=3)
    b = stream.batch(0, 8)
    K0 = pool.K[0]
    xs = torch.arange(48, dtype=torch.float64)
    for i in range(8):
        K = b["K"][i].double()
        ray = (xs - K[0, 2]) / K[0, 0]
        depth_row = b["depth"][i, 0, 16].double()
        matches = []
        for sign in ((1, -1) if flip else (1,)):
            x_pool = (K0[0, 2] + sign * K0[0, 0] * ray).round().clamp(0, W0 - 1)
            matches.append(bool(torch.allclose(depth_row, 1 + x_pool / W0, atol=1.01 / W0)))
        assert any(matches), i


def test_stream_batches_are_a_pure_function_of_seed_step_and_rank(small_pool):
    s = BlurStream(small_pool, StreamOptions(size=[64, 48]), seed=5)
    a, again = s.batch(3, 2), BlurStream(small_pool, StreamOptions(size=[64, 48]), seed=5).batch(3, 2)
    assert all(torch.equal(a[k], again[k]) for k in a)
    assert not torch.equal(a["blurred"], s.batch(4, 2)["blurred"])
    assert not torch.equal(a["blurred"], s.batch(3, 2, rank=1)["blurred"])
    assert set(a) >= {"blurred", "sharp", "depth", "valid_depth", "poses", "K", "valid_blur", "subframes"}
    assert a["blurred"].shape == (2, 3, 48, 64) and a["poses"].shape == (2, 6, 4, 4)
    # 8-bit values, as a photo's
    assert torch.equal(torch.round(a["blurred"] * 255) / 255, a["blurred"])


def test_device_draws_follow_the_engines_motion_model():
    """draw_shake (torch, a batch at once) and draw_motion (NumPy, the engine's) draw one distribution: the
    quantiles of the rotation and translation reached at the exposure's ends, and the share of roll, agree."""
    opts = SyntheticOptions(n=3)
    rng = np.random.default_rng(0)
    host = [draw_motion(rng, opts)[:2] for _ in range(4000)]
    u_h, v_h = (torch.from_numpy(np.stack(x)).float() for x in zip(*host))
    u_d, v_d = draw_shake(torch.Generator().manual_seed(0), 4000, 3, opts.fps, opts.rot_speed, opts.trans_speed)
    assert u_d.shape == v_d.shape == (4000, 7, 3) and float(u_d[:, 3].abs().max()) == 0.0
    q = torch.tensor([0.1, 0.5, 0.9])
    for a, b in ((u_h, u_d), (v_h, v_d)):
        qa, qb = (torch.quantile(x[:, -1].norm(dim=-1), q) for x in (a, b))
        assert torch.allclose(qa, qb, rtol=0.1), (qa, qb)
    roll = lambda u: float((u[:, -1, 2].abs() / u[:, -1].norm(dim=-1)).mean())
    assert abs(roll(u_h) - roll(u_d)) < 0.02
    # the streams' roll spread (0.7) gives real hand-held video's share of roll: median 0.37 on 7-Scenes
    u_s, _ = draw_shake(torch.Generator().manual_seed(1), 4000, 3, opts.fps, opts.rot_speed, opts.trans_speed,
                        StreamOptions().roll)
    d = u_s[:, -1] - u_s[:, 0]
    assert abs(float((d[:, 2].abs() / d.norm(dim=-1)).median()) - 0.37) < 0.04


def test_host_and_device_draws_make_the_same_kind_of_samples(small_pool):
    """Both draw modes are pure functions of (seed, step, rank) and spread blur alike; on a GPU device draws use a
    fixed number of sub-instants (no wait for the device), enough for the longest blur."""
    opts = dict(size=[64, 48], max_blur_px=20.0, max_subframes=4)
    host = BlurStream(small_pool, StreamOptions(draws="host", **opts), seed=2)
    device = BlurStream(small_pool, StreamOptions(**opts), seed=2)
    for s in (host, device):
        a, b = s.batch(1, 4), s.batch(1, 4)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(host.batch(1, 4)["blurred"], device.batch(1, 4)["blurred"])
    assert device.subframes() == 4  # 2 * 20 px / 6 steps = 6.7 px, capped at max_subframes
    assert BlurStream(small_pool, StreamOptions(size=[64, 48], max_blur_px=3.0), seed=2).subframes() == 1
    lengths = [torch.cat([s.batch(k, 8)["blur_px"] for k in range(6)]) for s in (host, device)]
    assert abs(float(lengths[0].median() - lengths[1].median())) < 4.0
    with pytest.raises(DatasetError, match="draws must be device or host"):
        BlurStream(small_pool, StreamOptions(draws="gpu"))


def test_blur_lengths_span_none_to_the_maximum(small_pool):
    s = BlurStream(small_pool, StreamOptions(size=[64, 48], max_blur_px=40.0, still=0.1, max_subframes=4), seed=0)
    lengths = torch.cat([s.batch(step, 8)["blur_px"] for step in range(8)])
    assert float(lengths.min()) < 2.0
    assert float(lengths.max()) > 28.0  # drawn as 40 U^2, rescaled to the exact length
    assert float(lengths.max()) < 40 * 1.25


def test_a_still_exposure_is_its_sharp_frame(small_pool):
    s = BlurStream(small_pool, StreamOptions(size=[64, 48], max_blur_px=0.0, still=0.0, noise=0.0), seed=0)
    b = s.batch(0, 2)
    assert (b["blurred"] - b["sharp"]).abs().max() <= 1.5 / 255
    assert float(b["valid_blur"].mean()) > 0.99


@pytest.mark.parametrize("draws", ["device", "host"])
def test_a_clean_fraction_of_blurred_images_has_no_sensor_noise(small_pool, draws):
    """``clean`` leaves a fraction of the samples noise-free (exactly the noise-free stream's image), the others
    noisy."""
    opts = {"size": [64, 48], "max_subframes": 2, "draws": draws}
    quiet = BlurStream(small_pool, StreamOptions(noise=0.0, **opts), seed=4).batch(1, 16)["blurred"]
    per_sample = lambda b: (b - quiet).abs().flatten(1).max(1).values
    noisy = per_sample(BlurStream(small_pool, StreamOptions(noise=0.05, **opts), seed=4).batch(1, 16)["blurred"])
    assert bool((noisy > 0).all())
    blurred = lambda clean: BlurStream(small_pool, StreamOptions(noise=0.05, clean=clean, **opts), seed=4).batch(1, 16)
    half = per_sample(blurred(0.5)["blurred"])
    assert 2 <= int((half == 0).sum()) <= 14 and bool((half[half > 0] > 2 / 255).all())
    assert bool((per_sample(blurred(1.0)["blurred"]) == 0).all())
    with pytest.raises(DatasetError, match="stream clean is a fraction"):
        BlurStream(small_pool, StreamOptions(clean=1.5))


def test_more_blur_means_a_blurrier_image(small_pool):
    def sharpness(max_blur):
        s = BlurStream(small_pool, StreamOptions(size=[64, 48], max_blur_px=max_blur, still=0.0, noise=0.0, gain=[1, 1]), seed=0)
        b = s.batch(0, 4)
        grad = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()
        return float(grad(b["blurred"]) / grad(b["sharp"]))

    assert sharpness(30.0) < sharpness(3.0) < 1.0


def test_losses_leave_out_invented_pixels():
    a, b = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    valid = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(deblur_loss(a, b)[0]) == 12.0 and float(deblur_loss(a, b, valid)[0]) == 3.0
    d, gt = torch.full((1, 1, 1, 2), 2.0), torch.tensor([[[[1.0, 4.0]]]])
    L, _ = depth_loss(d, gt, kind="log_l1")
    assert abs(float(L) - 2 * np.log(2)) < 1e-6  # |log 2 - log 1| + |log 2 - log 4|
    with pytest.raises(ValueError):
        depth_loss(d, gt, kind="l3")


def test_make_pool_cli_writes_a_pool_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "pool"
    assert main(["make-pool", "synthetic", "--num", "3", "--size", "64x48", "--out", str(out), "--quiet", "--jpeg", "90"]) == 0
    meta = json.loads((out / "pool.json").read_text())
    assert meta["size"] == [64, 48] and len(meta["frames"]) == 3 and meta["frames"][0]["file"].endswith(".jpg")
    before = sorted(p.name for p in (out / "rgb").iterdir())
    assert main(["make-pool", "synthetic", "--num", "3", "--out", str(out), "--quiet"]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "rgb").iterdir()) == before
    assert main(["make-pool", "tum", "--out", str(tmp_path / "q")]) == 2
    assert "needs --root" in capsys.readouterr().err and not (tmp_path / "q").exists()


def write_7scenes(root: Path, frames: int = 6) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(frames):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / f"frame-{i:06d}.color.png")
        d = np.full((48, 64), 1500, np.uint16)
        d[0, 0] = 65535  # no reading
        Image.fromarray(d).save(root / f"frame-{i:06d}.depth.png")
        T = np.eye(4)
        T[0, 3] = 0.01 * i
        np.savetxt(root / f"frame-{i:06d}.pose.txt", T)
    np.savetxt(root / "camera-intrinsics.txt", np.array([[58.5, 0, 32], [0, 58.5, 24], [0, 0, 1]]))
    return root


def test_7scenes_layout_reads_frames_depth_poses_and_ranges(tmp_path):
    from worldfromblur.data.rgbd.readers import load_depth, sevenscenes_sequence

    root = write_7scenes(tmp_path / "seq-01")
    seq = sevenscenes_sequence(root, frames=(1, 4))
    assert [f.rgb.name for f in seq.frames] == [f"frame-{i:06d}.color.png" for i in range(1, 5)]
    assert seq.K[0, 0] == 58.5 and seq.size == (64, 48) and abs(seq.fps - 30) < 1e-6
    assert np.allclose(seq.frames[1].pose[0, 3], 0.02)
    d = load_depth(seq, seq.frames[0])
    assert d[0, 0] == 0 and np.allclose(d[1:], 1.5)
    with pytest.raises(DatasetError, match="no frame-NNNNNN"):
        sevenscenes_sequence(root, frames=(100, 200))
    assert main(["make-pool", "7scenes", "--root", str(root), "--size", "32x24", "--out", str(tmp_path / "pool"),
                 "--quiet"]) == 0
    pool = load_pool(tmp_path / "pool")
    assert len(pool) == 6 and np.isclose(float(pool.K[0, 0, 0]), 29.25)


def test_photo_textures_reach_synthetic_pools(tmp_path):
    from worldfromblur.data.pool import build_pool

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):  # strongly coloured "photographs", unlike any procedural texture's palette
        a = np.zeros((64, 64, 3), np.uint8)
        a[..., i] = rng.integers(200, 256, (64, 64))
        Image.fromarray(a).save(photos / f"p{i}.png")
    plain = synthetic_pool(4, size=(64, 48), seed=0, progress=False)
    textured = synthetic_pool(4, size=(64, 48), seed=0, textures=str(photos), progress=False)
    assert not torch.equal(plain.rgb, textured.rgb)
    assert torch.equal(plain.depth, textured.depth)  # same rooms and cameras, other surfaces
    train, _ = build_pool(["synthetic:2"], textures=str(photos), progress=False)  # pools of synthetic:N: 320x240
    assert torch.equal(train.rgb, synthetic_pool(2, seed=0, textures=str(photos), progress=False).rgb)
    assert not torch.equal(train.rgb, synthetic_pool(2, seed=0, progress=False).rgb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no photographs"):
        build_pool(["synthetic:4"], textures=str(tmp_path / "empty"), progress=False)


def test_the_stream_can_draw_a_new_room_for_every_sample(small_pool):
    """With rooms=1 every sample is a procedural room of its own, ray-cast on the stream's device: a pure function
    of (seed, step, rank) like the pool's samples, with exact depth and intrinsics that fit the rendered frame."""
    opts = StreamOptions(size=[64, 48], rooms=1.0, max_blur_px=10.0, max_subframes=2)
    stream = BlurStream(small_pool, opts, seed=3)
    b = stream.batch(0, 4)
    assert b["sharp"].shape == (4, 3, 48, 64) and bool(b["valid_depth"].all()) and bool((b["depth"] > 0.3).all())
    again = stream.batch(0, 4)
    assert all(torch.equal(b[k], again[k]) for k in ("blurred", "sharp", "depth", "K", "poses"))
    other = stream.batch(1, 4)
    frames = torch.cat([b["sharp"], other["sharp"]]).flatten(1)
    assert (torch.cdist(frames, frames) + torch.eye(8) * 1e9).min() > 1.0  # eight different rooms
    pool_frames = (small_pool.rgb.permute(0, 3, 1, 2).float() / 255)
    assert not any(torch.equal(f, p) for f in b["sharp"] for p in pool_frames)  # not the pool's frames
    assert float(b["sharp"].std()) > 0.05  # textured rooms, not blank frames
    K = b["K"]
    assert bool((K[:, 0, 0] > 30).all()) and bool((K[:, 0, 2].abs() < 64).all())
    mixed = BlurStream(small_pool, StreamOptions(size=[64, 48], rooms=0.5, max_subframes=2), seed=3).batch(0, 8)
    assert mixed["sharp"].shape == (8, 3, 48, 64) and torch.isfinite(mixed["blurred"]).all()
    with pytest.raises(DatasetError, match="rooms is a fraction"):
        BlurStream(small_pool, StreamOptions(rooms=1.5))


def test_scenes_packed_in_parts_are_the_scenes_packed_at_once():
    """Room workers send rooms as padded arrays, a task's at a time; joined, they are the batch packed in one go."""
    from worldfromblur.data.synthetic.scene import make_scene
    from worldfromblur.data.synthetic.torch_render import SceneBatch, concat_packed, pack_scenes

    scenes = [make_scene(np.random.default_rng([4, i]), 48) for i in range(5)]
    assert len({len(s.objects) for s in scenes}) > 1 and len({len(s.lights) for s in scenes}) > 1
    whole = SceneBatch.from_scenes(scenes)
    joined = SceneBatch.from_arrays(concat_packed([pack_scenes(scenes[:2]), pack_scenes(scenes[2:3]),
                                                   pack_scenes(scenes[3:])]))
    for name, value in vars(whole).items():
        assert torch.equal(value, getattr(joined, name)), name


def test_room_workers_draw_the_same_rooms_ahead_of_their_step(small_pool, capsys):
    """``room_workers`` processes draw the new rooms of the next steps, and the texture banks of the next groups,
    while a step trains; the batches are byte for byte those drawn in the training process. A worker that dies
    costs speed, not the run: one warning, and the same batches drawn here."""
    def stream(workers):
        opts = StreamOptions(size=[64, 48], rooms=0.75, max_subframes=1, room_workers=workers)
        s = BlurStream(small_pool, opts, seed=5)
        s.rooms.banks.rooms = 1  # a new texture bank every step, so that the banks made ahead are used too
        return s

    here, ahead = stream(0), stream(2)
    try:
        for step in range(3):
            a, b = here.batch(step, 6), ahead.batch(step, 6)
            assert all(torch.equal(a[k], b[k]) for k in ("blurred", "sharp", "depth", "K", "poses"))
            waiting = {ident[0][0] for ident in ahead.rooms._rooms}  # the steps whose rooms the workers hold
            assert waiting == {step + 1, step + 2}
            assert set(ahead.rooms._bank_futures) == {step + 1, step + 2, step + 3}  # a bank beyond them
        os.kill(next(iter(ahead.rooms._executor._processes)), signal.SIGKILL)  # as the kernel's OOM killer would
        for step in range(3, 6):
            a, b = here.batch(step, 6), ahead.batch(step, 6)
            assert all(torch.equal(a[k], b[k]) for k in ("blurred", "sharp", "depth", "K", "poses"))
        assert ahead.rooms.workers == 0 and ahead.rooms._executor is None
        assert capsys.readouterr().err.count("a room worker died") == 1
    finally:
        ahead.rooms.close()
    with pytest.raises(DatasetError, match="room_workers must be a whole number"):
        BlurStream(small_pool, StreamOptions(rooms=1.0, room_workers=-1))


def test_the_streams_new_rooms_take_the_lens_range_of_the_config():
    """data.focal_range reaches the stream's new rooms: their focal length is the zoomed one times the drawn factor
    (a factor below 1 widens the view past the room frame's, which a rendered room allows); the option is checked,
    and is set in one place only."""
    from worldfromblur.data.stream import ROOM_K, ROOM_SIZE
    from worldfromblur.errors import WfbError
    from worldfromblur.training.config import load_config
    from worldfromblur.training.sources import stream_options

    pool = synthetic_pool(2, size=(64, 48), seed=1, progress=False)
    cover = max(64 / ROOM_SIZE[0], 48 / ROOM_SIZE[1])
    for factor in (0.5, 2.0):
        opts = StreamOptions(size=[64, 48], rooms=1.0, zoom=[1.0, 1.0], max_subframes=2, focal_range=[factor, factor])
        b = BlurStream(pool, opts, seed=5).batch(0, 3)
        assert torch.allclose(b["K"][:, 0, 0], torch.full((3,), float(ROOM_K[0, 0]) * cover * factor))
        assert bool((b["depth"] > 0.3).all()) and torch.isfinite(b["blurred"]).all()
    with pytest.raises(DatasetError, match="focal_range must be"):
        BlurStream(pool, StreamOptions(rooms=1.0, focal_range=[0.0, 1.0]))
    cfg = load_config("compact-depth", ["data.focal_range=[0.7,1.2]", "data.source=stream"])
    assert stream_options(cfg).focal_range == [0.7, 1.2]
    cfg = load_config("compact-depth", ["data.stream={focal_range: [1, 2]}"])
    with pytest.raises(WfbError, match="set data.focal_range"):
        stream_options(cfg)


def test_a_room_exposed_on_the_device_looks_like_its_pool_render():
    """The stream's rooms are exposed as render_still exposes a pool frame (auto-exposure, optics, sRGB):
    the same room and camera through both paths agree to the rounding of the last 8-bit step (measured: 1/255 at
    most, 0.002/255 on average)."""
    from worldfromblur.data.synthetic.engine import KEYS, SyntheticOptions, place_camera, render_still
    from worldfromblur.data.synthetic.scene import make_scene
    from worldfromblur.data.synthetic.textures import make_texture_bank
    from worldfromblur.data.synthetic.torch_render import SceneBatch, TextureStack, expose_batch, raycast_batch

    opts = SyntheticOptions(width=80, height=60)
    bank = make_texture_bank(0)
    K = opts.K()
    for index in (0, 1):
        rgb, depth, _ = render_still(0, index, opts, bank)
        scene = make_scene(np.random.default_rng([0, index, KEYS["pool room"], 0]), len(bank))
        R, C = place_camera(np.random.default_rng([0, index, KEYS["pool camera"], 0]), scene, K, 60, 80)
        radiance, d = raycast_batch(SceneBatch.from_scenes([scene]), TextureStack.from_bank(bank),
                                    torch.tensor(R, dtype=torch.float32)[None], torch.tensor(C, dtype=torch.float32)[None],
                                    torch.tensor(K, dtype=torch.float32)[None], 60, 80)
        assert np.abs(d[0].numpy() - depth).max() < 1e-3
        mine = expose_batch(radiance)[0].permute(1, 2, 0).numpy()
        diff = np.abs(mine - rgb / 255.0).max(-1)
        assert diff.max() <= 1 / 255 + 1e-6 and diff.mean() < 0.05 / 255
