"""The synthetic engine, the dataset format, the builder's folder rules, and BlurDataset."""

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldfromblur.data import (
    BlurDataset,
    DatasetError,
    SampleRecord,
    read_sample,
    write_sample,
)
from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
from worldfromblur.errors import WfbError
from worldfromblur.evaluation.metrics import psnr
from worldfromblur.geometry import reblur

SMALL = SyntheticOptions(width=160, height=120)


def build(out, num, seed=0, workers=2, opts=SMALL, **kw):
    return run_build(Path(out), plan_synthetic(opts, num, seed), workers=workers, progress=False, **kw)


def all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def same_tree(a: Path, b: Path) -> bool:
    files = all_files(a)
    return files == all_files(b) and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


# ------------------------------------------------------------------------------------------------- data agrees with geometry


M = 16  # border left out of the consistency checks


@pytest.fixture(scope="module")
def reblurred(dataset20) -> list[dict]:
    """Per sample of dataset20: its subframes, and PSNR (dB, inside the border) of the stored sharp frame and of
    reblur(stored sharp, depth, poses) against the stored blur."""
    ds = BlurDataset(dataset20, split="all")
    rows = []
    for i in range(len(ds)):
        it = ds[i]
        out = reblur(it["sharp"][None], it["depth"][None], it["poses"][None], it["K"],
                     subframes=int(it["subframes"]), averaging=ds.averaging)
        ref = it["blurred"][None, :, M:-M, M:-M]
        rows.append({"subframes": int(it["subframes"]), "reblur": psnr(out[..., M:-M, M:-M], ref),
                     "sharp": psnr(it["sharp"][None, :, M:-M, M:-M], ref)})
    return rows


def test_reblur_of_stored_sample_reproduces_stored_blur(reblurred):
    assert len(reblurred) == 20
    scores, raw = [r["reblur"] for r in reblurred], [r["sharp"] for r in reblurred]
    assert np.mean(scores) >= 30.0, scores
    # The blur is real: the blurred image is far from the sharp one, and re-blurring explains the difference.
    assert np.mean(raw) < 28.0, raw
    assert np.mean(scores) > np.mean(raw) + 10


def test_inverted_poses_fail_the_consistency_check(dataset20, reblurred):
    ds = BlurDataset(dataset20, split="all")
    good, bad = [], []
    for i, row in enumerate(reblurred):
        if row["subframes"] < 3:  # near-still samples cannot tell a pose from its inverse
            continue
        it = ds[i]
        inv = torch.linalg.inv(it["poses"])
        out = reblur(it["sharp"][None], it["depth"][None], inv[None], it["K"], subframes=row["subframes"],
                     averaging=ds.averaging)
        good.append(row["reblur"])
        bad.append(psnr(out[..., M:-M, M:-M], it["blurred"][None, :, M:-M, M:-M]))
    assert len(good) >= 3
    assert np.mean(bad) < np.mean(good) - 5


def test_manifest_statistics_show_the_documented_spread(dataset20):
    manifest = json.loads((dataset20 / "manifest.json").read_text())
    stats = manifest["statistics"]
    rot, blur = stats["rotation_deg_per_frame"], stats["blur_px_median"]
    assert rot["min"] < 0.3 and rot["max"] > 0.8  # from near-still to strong shake
    assert blur["min"] < 5 and blur["max"] > 15
    assert stats["depth_min_m"]["min"] >= 0.35 and stats["depth_max_m"]["max"] <= 12
    assert 1 <= stats["subframes"]["min"] and stats["subframes"]["max"] <= SMALL.max_subframes


def test_splits_keep_scenes_together(dataset20):
    manifest = json.loads((dataset20 / "manifest.json").read_text())
    scene_split = {}
    for split, ids in manifest["splits"].items():
        for sid in ids:
            scene = manifest["scenes"][sid]
            assert scene_split.setdefault(scene, split) == split
    assert all(len(manifest["splits"][s]) > 0 for s in ("train", "val", "test"))


def test_dataset_items(dataset20):
    ds = BlurDataset(dataset20, split="train")
    it = ds[0]
    assert it["blurred"].shape == (3, 240, 320) and it["sharp"].shape == (3, 240, 320)
    assert it["depth"].shape == (1, 240, 320) and it["poses"].shape == (6, 4, 4) and it["K"].shape == (3, 3)
    assert 0 <= float(it["blurred"].min()) and float(it["blurred"].max()) <= 1
    assert bool(it["valid_depth"].all()) and float(it["depth"].min()) > 0.3
    R = it["poses"][:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["blurred"].shape == (4, 3, 240, 320)
    with pytest.raises(DatasetError, match="unknown split"):
        BlurDataset(dataset20, split="training")


# ------------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_dataset_whatever_the_workers(tmp_path):
    build(tmp_path / "a", 4, seed=11, workers=1)
    build(tmp_path / "b", 4, seed=11, workers=2)
    assert same_tree(tmp_path / "a", tmp_path / "b")
    build(tmp_path / "c", 4, seed=12, workers=2)
    a, c = tmp_path / "a" / "samples" / "000000", tmp_path / "c" / "samples" / "000000"
    assert not filecmp.cmp(a / "blurred.png", c / "blurred.png", shallow=False)
    assert not filecmp.cmp(a / "depth.png", c / "depth.png", shallow=False)


# ------------------------------------------------------------------------------------------------- the format


def random_record(rng, H=12, W=16, frames=True):
    from worldfromblur.data.cameras import rotation_matrix

    poses = np.tile(np.eye(4), (6, 1, 1))
    poses[:, :3, :3] = rotation_matrix(rng.normal(0, 0.05, (6, 3)))
    poses[:, :3, 3] = rng.normal(0, 0.02, (6, 3))
    depth = rng.uniform(0.5, 9.0, (H, W))
    depth[0, 0] = 0.0
    return SampleRecord(
        blurred=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        sharp=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        depth=depth,
        poses=poses,
        K=np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]]),
        meta={"n": 3, "subframes": 2, "averaging": "srgb", "scene": "x"},
        frames=rng.integers(0, 256, (7, H, W, 3), dtype=np.uint8) if frames else None,
    )


def test_format_round_trip(tmp_path):
    rec = random_record(np.random.default_rng(0))
    write_sample(tmp_path, "000000", rec)
    back = read_sample(tmp_path / "000000", load_frames=True)
    assert np.array_equal(back.blurred, rec.blurred) and np.array_equal(back.sharp, rec.sharp)
    assert np.abs(back.depth - rec.depth).max() <= 0.0005 + 1e-12 and back.depth[0, 0] == 0
    assert np.allclose(back.poses, rec.poses, atol=1e-9) and np.allclose(back.K, rec.K)
    assert np.array_equal(back.frames, rec.frames)
    assert back.meta["subframes"] == 2 and back.meta["size"] == [16, 12]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def corrupt_truncated_png(d: Path):
    data = (d / "blurred.png").read_bytes()
    (d / "blurred.png").write_bytes(data[: len(data) // 2])
    return "blurred.png: unreadable image"


def corrupt_missing_poses(d: Path):
    (d / "poses.txt").unlink()
    return "poses.txt: missing pose file"


def corrupt_nan_depth(d: Path):
    from PIL import Image

    depth = np.full((12, 16), 2.0, np.float32)
    depth[3, 4] = np.nan
    (d / "depth.png").unlink()
    Image.fromarray(depth).save(d / "depth.tiff")
    return "depth.tiff: depth has NaN"


def corrupt_improper_rotation(d: Path):
    rows = np.loadtxt(d / "poses.txt", ndmin=2)
    rows[2, 0] = 3.0
    np.savetxt(d / "poses.txt", rows)
    return "poses.txt: rotations are not proper"


def corrupt_bad_K(d: Path):
    meta = json.loads((d / "meta.json").read_text())
    meta["K"][0][0] = -5
    (d / "meta.json").write_text(json.dumps(meta))
    return "meta.json: K is not sane"


def corrupt_wrong_depth_bits(d: Path):
    from PIL import Image

    Image.fromarray(np.full((12, 16), 100, np.uint8)).save(d / "depth.png")
    return "depth.png: expected a 16-bit"


@pytest.mark.parametrize(
    "corrupt",
    [corrupt_truncated_png, corrupt_missing_poses, corrupt_nan_depth, corrupt_improper_rotation, corrupt_bad_K,
     corrupt_wrong_depth_bits],
)
def test_corrupted_sample_names_the_bad_file(tmp_path, corrupt):
    d = write_sample(tmp_path, "000000", random_record(np.random.default_rng(1), frames=False))
    expected = corrupt(d)
    with pytest.raises(DatasetError) as err:
        read_sample(d)
    assert str(d) in str(err.value) and expected in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------- folder rules


def test_refuses_to_overwrite_and_never_touches_foreign_folders(tmp_path):
    out = tmp_path / "ds"
    build(out, 2, workers=1)
    before = (out / "samples" / "000000" / "blurred.png").read_bytes()
    with pytest.raises(WfbError, match="already holds a dataset; pass --overwrite"):
        build(out, 2, seed=5, workers=1)
    assert (out / "samples" / "000000" / "blurred.png").read_bytes() == before
    build(out, 2, seed=5, workers=1, overwrite=True)
    assert (out / "samples" / "000000" / "blurred.png").read_bytes() != before

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    for overwrite in (False, True):
        with pytest.raises(WfbError, match="not a world-from-blur dataset"):
            build(foreign, 2, workers=1, overwrite=overwrite)
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"


def test_killed_build_resumes_to_the_same_dataset(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "worldfromblur.cli.main", "make-dataset", "synthetic", "--out", str(out), "--num", "6",
           "--size", "160x120", "--seed", "4", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "samples" / "000001").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the build finished before it could be interrupted"
    with pytest.raises(DatasetError, match="interrupted"):
        BlurDataset(out)
    # A half-written sample left behind by the kill is never listed, and is cleaned up on resume.
    (out / "samples" / ".tmp-000005").mkdir(exist_ok=True)
    (out / "samples" / ".tmp-000005" / "blurred.png").write_bytes(b"half")
    with pytest.raises(WfbError, match="differs in: num"):
        run_build(out, plan_synthetic(SMALL, 7, 4), workers=1, progress=False)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    build(tmp_path / "fresh", 6, seed=4, workers=1)
    assert same_tree(out, tmp_path / "fresh")


def test_cli_reports_bad_options_in_one_line(tmp_path, capsys):
    from worldfromblur.cli.main import main

    code = main(["make-dataset", "synthetic", "--out", str(tmp_path / "x"), "--splits", "0.5", "0.5", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--splits must be three non-negative fractions" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv", [["--help"], ["make-dataset", "--help"], ["make-dataset", "synthetic", "--help"],
                                  ["demo", "--help"]])
def test_help(argv, capsys):
    from worldfromblur.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: wfb" in capsys.readouterr().out


def test_demo_writes_a_preview(tmp_path):
    from PIL import Image

    from worldfromblur.cli.main import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--num", "2", "--rows", "2", "--workers", "1"]) == 0
    with Image.open(tmp_path / "demo" / "preview.png") as im:
        assert im.size[0] > 3 * 320 and im.size[1] > 2 * 240
    assert main(["demo", "--out", str(tmp_path / "demo"), "--num", "2", "--workers", "1"]) == 2  # no silent overwrite


def test_kept_frames_are_the_exposure_instants(tmp_path):
    opts = SyntheticOptions(width=160, height=120, keep_frames=True, averaging="srgb", rot_speed=(1.0, 2.0),
                            trans_speed=(0.02, 0.03))
    build(tmp_path / "f", 2, seed=2, workers=1, opts=opts)
    ds = BlurDataset(tmp_path / "f", split="all", load_frames=True)
    for i in range(len(ds)):
        it = ds[i]
        assert it["frames"].shape == (7, 3, 120, 160)
        assert torch.equal(it["frames"][3], it["sharp"])  # the middle instant is the reference
        if int(it["subframes"]) == 1:  # then the exposure is exactly the 7 frames, averaged as sRGB values
            assert psnr(it["frames"].mean(0), it["blurred"]) > 45


def _room_print(scene) -> tuple:
    """A room's identity: its size and the rounded positions of its lights and objects."""
    r = scene.room
    return (round(r.half_x, 9), round(r.half_z, 9), round(r.height, 9),
            tuple(np.round(scene.lights, 9).ravel()), tuple(tuple(np.round(o.center, 9)) for o in scene.objects))


def test_no_frame_pool_holds_a_room_of_any_dataset(monkeypatch):
    """The same seed through both paths (frame pool, dataset) never builds the same room: a pool frame's room comes
    from another generator key than any dataset scene's (issue: pool frame i of seed 0 was dataset room i)."""
    import worldfromblur.data.synthetic.engine as engine
    from worldfromblur.data.synthetic.engine import (
        check_seed,
        render_sample,
        render_still,
    )
    from worldfromblur.data.synthetic.scene import make_scene
    from worldfromblur.data.synthetic.textures import make_texture_bank

    rooms: list = []
    monkeypatch.setattr(engine, "make_scene", lambda rng, n: rooms.append(make_scene(rng, n)) or rooms[-1])
    opts = SyntheticOptions(width=24, height=16, samples_per_scene=1)
    bank = make_texture_bank(0)
    pool, data = set(), set()
    for seed in (0, 1):
        for i in range(8):
            rooms.clear()
            render_still(seed, i, opts, bank)
            pool.add(_room_print(rooms[-1]))
            rooms.clear()
            render_sample(seed, i, opts, bank)
            data.add(_room_print(rooms[-1]))
    assert len(pool) == 16 and len(data) == 16  # every frame and every scene its own room
    assert not pool & data
    # The fingerprint does tell rooms apart and alike: the keys the pool used before give the dataset's rooms.
    old = _room_print(make_scene(np.random.default_rng([0, 3, 0, 0]), len(bank)))
    assert old in data
    for bad in (-1, 2**32, 1.5):
        with pytest.raises(ValueError, match="whole number"):
            check_seed(bad)


def _bank_print(bank) -> tuple:
    return tuple(float(t.levels[0][::37, ::41].sum()) for t in bank)


def test_texture_banks_change_every_few_rooms_and_keep_the_seed_bank_at_zero(tmp_path, capsys):
    """TextureBanks: with rooms=0 every room gets the seed's one bank (what every build had before the option);
    with rooms=N a new bank every N rooms, the same for the same key, another for another use; a synthetic pool
    made with texture_rooms=0 is the pool of before, one with texture_rooms=N shows its rooms other textures; bad
    values stop the command in one line."""
    from worldfromblur.cli.main import main
    from worldfromblur.data.pool import synthetic_pool
    from worldfromblur.data.synthetic.engine import KEYS, render_still
    from worldfromblur.data.synthetic.textures import TextureBanks, make_texture_bank

    seed_bank = _bank_print(make_texture_bank(4))
    fixed = TextureBanks(4, 0, word=KEYS["pool textures"])
    assert _bank_print(fixed(0)) == seed_bank and fixed(123456) is fixed(0)
    every3 = TextureBanks(4, 3, word=KEYS["pool textures"])
    groups = [_bank_print(every3(i)) for i in range(7)]
    assert groups[0] == groups[1] == groups[2] != groups[3] == groups[4] == groups[5] != groups[6]
    assert seed_bank not in groups and len(set(groups)) == 3
    assert _bank_print(TextureBanks(4, 3, word=KEYS["pool textures"])(4)) == groups[4]  # deterministic
    assert _bank_print(TextureBanks(4, 3, word=KEYS["dataset textures"])(4)) != groups[4]  # keyed by use
    with pytest.raises(ValueError, match="texture_rooms"):
        TextureBanks(4, -1)

    old = synthetic_pool(3, size=(32, 24), seed=4, progress=False, texture_rooms=0)
    opts = SyntheticOptions(width=32, height=24)
    for i in range(3):  # frame i as render_still gave it with the seed's bank
        assert torch.equal(old.rgb[i], torch.from_numpy(render_still(4, i, opts, make_texture_bank(4))[0]))
    new = synthetic_pool(3, size=(32, 24), seed=4, progress=False, texture_rooms=1)
    assert torch.allclose(old.depth, new.depth) and not torch.equal(old.rgb, new.rgb)  # same rooms, new textures
    assert SyntheticOptions().to_dict() == {k: v for k, v in SyntheticOptions(texture_rooms=5).to_dict().items()
                                            if k != "texture_rooms"}  # the default leaves a build's stamp as it was
    for argv in (["make-pool", "synthetic", "--num", "2", "--texture-rooms", "-1", "--out", str(tmp_path / "p")],
                 ["make-dataset", "synthetic", "--num", "2", "--texture-rooms", "-2", "--out", str(tmp_path / "d")]):
        assert main(argv) == 2 and "--texture-rooms must be 0" in capsys.readouterr().err
        assert not any(tmp_path.iterdir())


def test_a_pool_over_focal_lengths_renders_each_frame_through_its_own_lens(tmp_path, capsys):
    """focal_range: frame i's focal length is the default camera's times a factor from the range, drawn from its own
    key (the same every time, principal point kept), and the frame is exactly the render of that camera; without it
    the pool and a build's stamp are as before; bad ranges stop the config and the command in one line."""
    from worldfromblur.cli.main import main
    from worldfromblur.data.pool import synthetic_pool
    from worldfromblur.data.synthetic.engine import frame_K, render_still
    from worldfromblur.data.synthetic.textures import make_texture_bank
    from worldfromblur.errors import WfbError
    from worldfromblur.training.config import load_config

    size, base = (40, 30), SyntheticOptions(width=40, height=30).K()
    wide = synthetic_pool(5, size=size, seed=3, progress=False, texture_rooms=0, focal_range=[0.5, 1.5])
    factors = wide.K[:, 0, 0].numpy() / base[0, 0]
    assert np.all((factors >= 0.5) & (factors <= 1.5)) and factors.max() - factors.min() > 0.1
    assert np.allclose(wide.K[:, 1, 1].numpy() / base[1, 1], factors)
    assert np.allclose(wide.K[:, :2, 2].numpy(), base[:2, 2])
    opts = SyntheticOptions(width=40, height=30, focal_range=[0.5, 1.5])
    bank = make_texture_bank(3)
    for i in range(5):
        K = frame_K(3, i, opts)
        assert np.allclose(K, wide.K[i].numpy())
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        rgb, depth, _ = render_still(3, i, SyntheticOptions(width=40, height=30, intrinsics=[fx, fy, cx, cy]), bank)
        assert torch.equal(wide.rgb[i], torch.from_numpy(rgb)) and np.allclose(wide.depth[i].numpy(), depth)
    plain = synthetic_pool(2, size=size, seed=3, progress=False, texture_rooms=0)
    assert np.allclose(plain.K.numpy(), base)
    default_lens = SyntheticOptions(width=40, height=30)
    assert torch.equal(plain.rgb[0], torch.from_numpy(render_still(3, 0, default_lens, bank)[0]))
    assert "focal_range" not in SyntheticOptions().to_dict() and opts.to_dict()["focal_range"] == [0.5, 1.5]

    assert load_config("compact-depth", ["data.focal_range=[0.6,1.3]"]).data.synthetic()["focal_range"] == [0.6, 1.3]
    for bad in ("[0,1]", "[1.5,1]", "[1]", "nope"):
        with pytest.raises(WfbError, match="data.focal_range must be"):
            load_config("compact-depth", [f"data.focal_range={bad}"])
    out = tmp_path / "p"
    assert main(["make-pool", "synthetic", "--num", "2", "--focal-range", "1.2", "0.8", "--out", str(out)]) == 2
    assert "focal_range must be factors" in capsys.readouterr().err and not out.exists()


def test_the_torch_renderer_agrees_with_the_numpy_caster():
    """One scene description, two renderers: on the same scenes and cameras the batched torch caster gives the NumPy
    caster's depth within 1 mm and its colour (exposed, sRGB) within 2/255 away from the edges between surfaces."""
    from worldfromblur.data.synthetic.engine import auto_exposure, place_camera
    from worldfromblur.data.synthetic.scene import _cast, make_scene, raycast, raycast_depth
    from worldfromblur.data.synthetic.textures import make_texture_bank
    from worldfromblur.data.synthetic.torch_render import (
        SceneBatch,
        TextureStack,
        raycast_batch,
    )
    from worldfromblur.imaging import linear_to_srgb

    bank = make_texture_bank(1)
    H, W = 60, 80
    K = SyntheticOptions(width=W, height=H).K()
    scenes, cams = [], []
    for i in (5, 6, 9, 11):  # rooms whose views hold spheres, cylinders, boxes, and only walls
        scene = make_scene(np.random.default_rng([11, i]), len(bank))
        scenes.append(scene)
        cams.append(place_camera(np.random.default_rng([12, i]), scene, K, H, W))
    R = torch.tensor(np.stack([c[0] for c in cams]), dtype=torch.float32)
    C = torch.tensor(np.stack([c[1] for c in cams]), dtype=torch.float32)
    radiance, depth = raycast_batch(SceneBatch.from_scenes(scenes), TextureStack.from_bank(bank), R, C,
                                    torch.tensor(K, dtype=torch.float32).expand(4, 3, 3), H, W)
    assert radiance.shape == (4, H, W, 3) and depth.shape == (4, H, W)
    kinds = set()
    for b, scene in enumerate(scenes):
        ref_radiance, ref_depth = raycast(scene, bank, *cams[b], K, H, W)
        probe = raycast_depth(scene, *cams[b], K, H, W, stride=3)
        assert np.array_equal(probe, raycast(scene, bank, *cams[b], K, H, W, stride=3)[1])
        _, _, owner, face = _cast(scene, *cams[b], K, H, W, 1)
        surface = np.pad(np.where(owner < 0, face, 6 + owner), 1, mode="edge")
        interior = np.ones((H, W), bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                interior &= surface[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] == surface[1:-1, 1:-1]
        assert interior.mean() > 0.8
        kinds |= {type(scene.objects[i]).__name__ for i in np.unique(owner) if i >= 0}
        assert np.abs(depth[b].numpy() - ref_depth)[interior].max() < 1e-3
        gain = auto_exposure(ref_radiance)
        colour = linear_to_srgb(np.clip(radiance[b].numpy().astype(np.float64) * gain, 0, 1))
        ref_colour = linear_to_srgb(np.clip(ref_radiance.astype(np.float64) * gain, 0, 1))
        assert np.abs(colour - ref_colour).max(-1)[interior].max() <= 2 / 255
        relative = np.abs(radiance[b].numpy() - ref_radiance) / np.maximum(ref_radiance, 1e-3)
        assert np.median(relative.max(-1)[interior]) < 1e-4  # and in fact the same shading, not just close
    assert kinds == {"Box", "Cylinder", "Sphere"}  # the check saw every kind of object


def test_a_synthetic_pool_is_the_same_whatever_its_workers_do(capsys):
    """A pool rendered by worker processes holds the frames rendered here; a worker that dies (killed, out of
    memory) costs speed, not the pool: the other frames are rendered in this process, with one warning."""
    import multiprocessing
    import threading

    from worldfromblur.data.pool import synthetic_pool

    def frames(pool):
        return pool.rgb, pool.depth, pool.K

    here = frames(synthetic_pool(8, size=(32, 24), seed=6, progress=False))
    assert all(torch.equal(a, b) for a, b in zip(here, frames(synthetic_pool(8, size=(32, 24), seed=6, progress=False,
                                                                              workers=2))))
    killed = []

    def kill_a_worker():  # as soon as one is started, long before it can have rendered its frames
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)
                break
            time.sleep(0.002)

    capsys.readouterr()
    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        broken = frames(synthetic_pool(8, size=(32, 24), seed=6, progress=False, workers=2))
    finally:
        killer.join()
    assert killed and all(torch.equal(a, b) for a, b in zip(here, broken))
    assert capsys.readouterr().err.count("a pool-rendering worker died") == 1

