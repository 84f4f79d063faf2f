"""Real RGB-D builders (TUM RGB-D, ICL-NUIM, NYU Depth v2 raw, frame folders): formats, conventions, odometry, bad
input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.rgbd_fixtures import (ICL_K, TUM_K, nyu_recording, record, write_folders, write_nyu, write_pgm,
                                     write_sevenscenes, write_tum)
from worldfromblur.cli.main import main
from worldfromblur.data import BlurDataset
from worldfromblur.data.build import run_build
from worldfromblur.data.format import DatasetError
from worldfromblur.data.rgbd import RGBDOptions, plan_rgbd, window_poses
from worldfromblur.data.rgbd.build import fill_depth, rgbd_renderer, resize_depth, resize_rgb, window_sample
from worldfromblur.data.rgbd.readers import (NYU_DEPTH_TO_RGB, folders_sequence, interpolate_poses, load_depth,
                                             load_rgb, nyu_raw_to_metres, nyu_sequence, read_netpbm, tum_sequence)
from worldfromblur.data.cameras import scale_intrinsics_np
from worldfromblur.geometry import reblur

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "tum-layout-7scenes-sample"
MARGIN = 16


def consistency(root: Path, invert: bool = False) -> np.ndarray:
    """PSNR (dB) inside a margin of reblur(stored sharp, depth, poses) against the stored blur, per sample."""
    ds = BlurDataset(root, split="all")
    out = []
    for i in range(len(ds)):
        item, rec = ds[i], ds.record(i)
        depth = torch.from_numpy(fill_depth(rec.depth)).float()[None, None]
        poses = item["poses"][None]
        if invert:
            poses = torch.linalg.inv(poses)
        b = reblur(item["sharp"][None], depth, poses, item["K"], subframes=int(item["subframes"]),
                   averaging=ds.averaging)[0]
        m = slice(MARGIN, -MARGIN)
        out.append(float(-10 * torch.log10(((b[:, m, m] - item["blurred"][:, m, m]) ** 2).mean())))
    return np.array(out)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    base = tmp_path_factory.mktemp("rgbd")
    return {
        "tum": write_tum(base / "rgbd_dataset_freiburg1_fixture", record(9)),
        "icl": write_tum(base / "living_room_fixture", record(9, K=ICL_K), flip_y=True),
        "nyu": write_nyu(base / "kitchen_0001_fixture", nyu_recording(9)),
        "folders": write_folders(base / "redwood_fixture", record(9)),
        "7scenes": write_sevenscenes(base / "fragment-1-rgbd-frames", record(9)),
    }


def build(tmp_path: Path, kind: str, root: Path, **options) -> tuple[Path, dict]:
    if kind == "7scenes" and "intrinsics" not in options:  # the layout as SUN3D excerpts come: no intrinsics file
        options["intrinsics"] = [TUM_K[0, 0], TUM_K[1, 1], TUM_K[0, 2], TUM_K[1, 2]]
    out = tmp_path / f"ds-{kind}"
    manifest = run_build(out, plan_rgbd([root], RGBDOptions(kind=kind, **options)), workers=1, progress=False)
    return out, manifest


# ------------------------------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("kind", ["tum", "icl", "nyu", "folders", "7scenes"])
def test_built_samples_are_consistent_and_inverted_poses_are_not(sequences, tmp_path, kind):
    out, manifest = build(tmp_path, kind, sequences[kind])
    assert manifest["num_samples"] == 3 and not manifest["skipped"]
    good, inverted = consistency(out), consistency(out, invert=True)
    assert (good >= 30).all(), good
    assert (inverted < 30).all() and (good - inverted >= 4).all(), (good, inverted)
    meta = json.loads((out / "samples" / manifest["splits"]["train"][0] / "meta.json").read_text())
    assert meta["subframes"] > 1 and meta["averaging"] == "linear"
    assert meta["provenance"]["poses"] == ("estimated: dense RGB-D odometry" if kind == "nyu" else "ground truth")


def test_a_worker_reads_each_frame_once_and_builds_the_same_samples(sequences, tmp_path, monkeypatch):
    """Consecutive windows share 2n of their 2n + 1 frames: a worker's frame cache decodes each source frame once,
    and a window built from cached frames is the one built from frames read afresh."""
    import worldfromblur.data.rgbd.build as rgbd_build

    read, load_rgb = [], rgbd_build.load_rgb
    monkeypatch.setattr(rgbd_build, "load_rgb", lambda seq, frame: read.append(frame.rgb) or load_rgb(seq, frame))
    opts = RGBDOptions(kind="tum", max_subframes=3)
    _, manifest = build(tmp_path, "tum", sequences["tum"], max_subframes=3)
    assert manifest["num_samples"] == 3 and len(read) == len(set(read)) == 9  # 3 windows of 7 frames: frames 0-8
    sample = rgbd_renderer([str(sequences["tum"])], opts.to_dict())
    cached = [sample(i) for i in range(3)][-1]
    fresh = window_sample(tum_sequence(sequences["tum"]), 5, opts)  # window 2 is centred on frame 5
    for name in ("blurred", "sharp", "depth", "poses", "K"):
        assert np.array_equal(getattr(cached, name), getattr(fresh, name)), name


def test_sevenscenes_layout_without_intrinsics_needs_them_given(sequences, tmp_path):
    """SUN3D excerpts come in the 7-Scenes layout without an intrinsics file: the 7-Scenes default (fx 585) is then
    the wrong camera, and only the given one (``--intrinsics``) re-blurs consistently."""
    given, _ = build(tmp_path / "given", "7scenes", sequences["7scenes"])
    default, _ = build(tmp_path / "default", "7scenes", sequences["7scenes"], intrinsics=None)
    fx = [float(BlurDataset(out, split="all")[0]["K"][0, 0]) for out in (given, default)]
    assert np.allclose(fx, [TUM_K[0, 0] / 2, 585.0 / 2], atol=1e-3), fx  # built at 320 x 240 from 640 x 480
    good, wrong = consistency(given), consistency(default)
    assert (good >= 30).all() and (good - wrong >= 1).all(), (good, wrong)


def test_icl_fy_sign_ignored_fails_the_check(sequences, tmp_path):
    out, _ = build(tmp_path, "icl", sequences["icl"], icl_handle_fy_sign=False)
    assert (consistency(out) < 27).all()


def test_nyu_depth_in_the_other_byte_order_is_unusable(sequences, tmp_path):
    _, manifest = build(tmp_path, "nyu", sequences["nyu"], pgm_byte_order="big")
    assert manifest["num_samples"] == 0
    assert sum(manifest["skipped_reasons"].values()) == 3


def test_icl_associations_layout(sequences, tmp_path):
    """ICL-NUIM's own TUM-compatible layout: associations.txt ("t_depth depth t_rgb rgb") and a *.gt.freiburg file."""
    root = tmp_path / "living_room_assoc"
    shutil.copytree(sequences["icl"], root)
    rgb = [line.split() for line in (root / "rgb.txt").read_text().splitlines() if not line.startswith("#")]
    depth = [line.split() for line in (root / "depth.txt").read_text().splitlines() if not line.startswith("#")]
    (root / "associations.txt").write_text("".join(f"{d[0]} {d[1]} {r[0]} {r[1]}\n" for d, r in zip(depth, rgb)))
    (root / "groundtruth.txt").rename(root / "livingRoom0.gt.freiburg")
    for name in ("rgb.txt", "depth.txt"):
        (root / name).unlink()
    out, manifest = build(tmp_path, "icl", root)
    assert manifest["num_samples"] == 3
    assert (consistency(out) >= 30).all()


def test_frame_folders_read_numbers_intrinsics_depth_scale_and_ranges(sequences, tmp_path):
    root = sequences["folders"]
    seq = folders_sequence(root, frames=(202, 205))
    assert [f.rgb.name for f in seq.frames] == [f"{i:05d}.jpg" for i in range(202, 206)]
    assert abs(seq.fps - 30) < 1e-9 and seq.size == (640, 480)
    assert np.allclose(seq.K, np.loadtxt(root / "camera-intrinsics.txt"))
    assert all(f.pose is not None and f.depth is not None for f in seq.frames)
    depth = load_depth(seq, seq.frames[0])
    truth = np.asarray(Image.open(root / "depth" / "00202.png"), np.float64) / 1000
    assert np.array_equal(depth, truth)
    # ScanNet's exporter: frames numbered 0, 1, ... without padding, a 4 x 4 intrinsic_color.txt; 0.1 mm units
    scannet = write_folders(tmp_path / "scene0000_00", record(3, seed=1), scannet=True, depth_scale=10000)
    seq = folders_sequence(scannet, fps=15, depth_scale=10000)
    assert [f.rgb.name for f in seq.frames] == ["0.jpg", "1.jpg", "2.jpg"] and abs(seq.fps - 15) < 1e-9
    assert seq.K[0, 0] == pytest.approx(TUM_K[0, 0])
    assert load_depth(seq, seq.frames[0]).max() < 20  # metres, not tenths of millimetres
    with pytest.raises(DatasetError, match="no numbered colour frames"):
        folders_sequence(root, frames=(0, 10))


def test_plain_average_is_the_papers(sequences, tmp_path):
    out, manifest = build(tmp_path, "tum", sequences["tum"], max_subframes=1, averaging="srgb", keep_frames=True)
    rec = BlurDataset(out, split="all", load_frames=True).record(0)
    assert rec.meta["subframes"] == 1 and rec.meta["averaging"] == "srgb"
    mean = rec.frames.astype(np.float64).mean(0)
    assert np.abs(rec.blurred - mean).max() <= 1.0  # the frames' plain average, to 8-bit rounding
    assert (consistency(out) >= 30).all()


# ------------------------------------------------------------------------------------------------- odometry


def _window(seq, size=(320, 240)):
    K = scale_intrinsics_np(seq.K, size[0] / seq.size[0], size[1] / seq.size[1])
    frames = [(np.round(resize_rgb(load_rgb(seq, f), size) * 255).astype(np.uint8), resize_depth(load_depth(seq, f), size))
              for f in seq.frames[1:8]]
    return frames, K


def _pose_errors(estimated: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    E = np.linalg.inv(truth) @ estimated
    angle = np.rad2deg(np.arccos(np.clip((np.trace(E[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return 1000 * np.linalg.norm(E[:, :3, 3], axis=1), angle


def test_odometry_recovers_the_known_poses_of_the_nyu_fixture(sequences):
    rec = nyu_recording(9)  # the same rendering the fixture files hold, with its true poses
    seq = nyu_sequence(sequences["nyu"])
    frames, K = _window(seq)
    estimated, fits = window_poses(frames, K)
    ref = rec.poses[4]
    truth = np.stack([np.linalg.inv(rec.poses[k]) @ ref for k in range(1, 8)])
    mm, deg = _pose_errors(estimated, truth)
    assert all(f.ok() for f in fits)
    assert mm.max() < 5.0 and deg.max() < 0.2, (mm, deg)


def test_odometry_error_is_reported_next_to_ground_truth(sequences, tmp_path):
    out, manifest = build(tmp_path, "tum", sequences["tum"], poses="odometry")
    assert manifest["num_samples"] == 3
    for sid in manifest["scenes"]:
        meta = json.loads((out / "samples" / sid / "meta.json").read_text())
        err = meta["provenance"]["odometry_vs_groundtruth"]
        assert err["max_translation_mm"] < 5.0 and err["max_rotation_deg"] < 0.2
        assert len(meta["provenance"]["odometry"]) == 6
    assert (consistency(out) >= 30).all()


# ------------------------------------------------------------------------------------------------- formats


def test_ground_truth_is_interpolated_at_frame_times():
    times = np.array([0.0, 0.01])
    a, b = np.eye(4), np.eye(4)
    b[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
    b[:3, 3] = [0.2, 0, 0]
    mid = interpolate_poses(times, np.stack([a, b]), 0.005, max_gap=0.05)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    assert np.allclose(mid[:3, :3], [[c, -s, 0], [s, c, 0], [0, 0, 1]]) and np.allclose(mid[:3, 3], [0.1, 0, 0])
    assert interpolate_poses(times, np.stack([a, b]), 0.02, max_gap=0.05) is None
    assert interpolate_poses(times, np.stack([a, b]), 0.005, max_gap=0.001) is None


def test_nyu_raw_depth_conversion_and_registration():
    raw = np.array([[741, 2047, 500, 1000]], np.uint16)
    d = nyu_raw_to_metres(raw)
    assert d[0, 0] == pytest.approx(351.3 / (1092.5 - 741)) and d[0, 1] == 0 and d[0, 2] == 0
    assert d[0, 3] == pytest.approx(351.3 / 92.5)
    R = NYU_DEPTH_TO_RGB[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.linalg.det(R) == pytest.approx(1, abs=1e-4)
    assert NYU_DEPTH_TO_RGB[0, 3] == pytest.approx(-0.025031875059141302)


def test_netpbm_byte_orders(tmp_path):
    a = np.array([[1, 256, 741]], np.uint16)
    write_pgm(tmp_path / "le.pgm", a, "little")
    assert read_netpbm(tmp_path / "le.pgm", "little").tolist() == a.tolist()
    assert read_netpbm(tmp_path / "le.pgm", "big").tolist() == [[256, 1, 58626]]


def test_real_tum_layout_sample_builds_consistently(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("the shared real sample is not next to this checkout")
    root = tmp_path / "seven-scenes"
    root.mkdir()
    for name in ("rgb.txt", "depth.txt", "groundtruth.txt"):
        shutil.copy(SHARED / name, root / name)
    for name in ("rgb", "depth"):
        (root / name).symlink_to(SHARED / name)
    seq = tum_sequence(root, intrinsics=(585, 585, 320, 240))
    assert len(seq.frames) == 60 and all(f.pose is not None and f.depth is not None for f in seq.frames)
    out = tmp_path / "ds"
    manifest = run_build(out, plan_rgbd([root], RGBDOptions(kind="tum", intrinsics=[585, 585, 320, 240], stride=18)),
                         workers=1, progress=False)
    assert manifest["num_samples"] == 3
    assert (consistency(out) >= 30).all()


# ------------------------------------------------------------------------------------------------- bad input


def _cli(*argv) -> int:
    return main(["make-dataset", *[str(a) for a in argv]])


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line]
    assert len(err) == 1 and err[0].startswith("wfb: error: ") and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.fixture
def tum_copy(sequences, tmp_path):
    return shutil.copytree(sequences["tum"], tmp_path / "rgbd_dataset_freiburg1_copy")


def test_missing_groundtruth(tum_copy, tmp_path, capsys):
    (tum_copy / "groundtruth.txt").unlink()
    assert _cli("tum", "--root", tum_copy, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "groundtruth.txt", "missing")
    assert not (tmp_path / "out").exists()


def test_unparsable_line(tum_copy, tmp_path, capsys):
    lines = (tum_copy / "groundtruth.txt").read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split()[2], "abc")
    (tum_copy / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    assert _cli("tum", "--root", tum_copy, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "groundtruth.txt:6", "'abc' is not a number")
    assert not (tmp_path / "out").exists()


def test_timestamps_out_of_order(tum_copy, tmp_path, capsys):
    lines = (tum_copy / "rgb.txt").read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    (tum_copy / "rgb.txt").write_text("\n".join(lines) + "\n")
    assert _cli("tum", "--root", tum_copy, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "rgb.txt", "out of order")


def test_eight_bit_depth_png_is_a_counted_skip_naming_the_file(tum_copy, tmp_path, capsys):
    first_depth = sorted((tum_copy / "depth").iterdir())[4]
    Image.fromarray(np.full((480, 640), 100, np.uint8)).save(first_depth)
    assert _cli("tum", "--root", tum_copy, "--out", tmp_path / "out", "--quiet", "--workers", "1") == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["num_samples"] == 0 and len(manifest["skipped"]) == 3
    assert all(first_depth.name in why and "16-bit" in why for why in manifest["skipped"].values())
    assert not list((tmp_path / "out" / "samples").glob("0*[0-9]"))  # nothing half-written is listed


def test_truncated_ppm_is_a_counted_skip_naming_the_file(sequences, tmp_path):
    root = tmp_path / "kitchen_copy"
    shutil.copytree(sequences["nyu"], root)
    victim = sorted(root.glob("r-*.ppm"))[1]
    victim.write_bytes(victim.read_bytes()[:5000])
    manifest = run_build(tmp_path / "out", plan_rgbd([root], RGBDOptions(kind="nyu")), workers=1, progress=False)
    reasons = list(manifest["skipped"].values())
    assert manifest["num_samples"] == 1 and len(reasons) == 2
    assert all(victim.name in r and "truncated" in r for r in reasons)
    with pytest.raises(DatasetError, match="truncated"):
        load_rgb(nyu_sequence(root), nyu_sequence(root).frames[1])


@pytest.fixture
def folders_copy(sequences, tmp_path):
    return shutil.copytree(sequences["folders"], tmp_path / "folders_copy")


def test_frame_folders_without_intrinsics(folders_copy, tmp_path, capsys):
    (folders_copy / "camera-intrinsics.txt").unlink()
    assert _cli("folders", "--root", folders_copy, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "camera-intrinsics.txt", "--intrinsics")
    assert not (tmp_path / "out").exists()
    # given on the command line, they are enough
    assert _cli("folders", "--root", folders_copy, "--intrinsics", 517.3, 516.5, 318.6, 255.3, "--size", "160x120",
                "--out", tmp_path / "out", "--quiet", "--workers", 1) == 0


def test_frame_folders_with_depth_of_another_size(folders_copy, tmp_path, capsys):
    for p in (folders_copy / "depth").iterdir():
        Image.fromarray(np.zeros((240, 320), np.uint16)).save(p)
    assert _cli("folders", "--root", folders_copy, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "depth is 320x240 but colour is 640x480")
    assert not (tmp_path / "out").exists()


def test_frame_folders_without_color_folder_and_bad_rates(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli("folders", "--root", tmp_path / "empty", "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "no color/ folder")
    assert _cli("folders", "--root", tmp_path / "empty", "--fps", 0, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "--fps must be positive")
    assert not (tmp_path / "out").exists()


def test_tum_camera_must_be_known(sequences, tmp_path, capsys):
    root = tmp_path / "unnamed"
    shutil.copytree(sequences["tum"], root)
    assert _cli("tum", "--root", root, "--out", tmp_path / "out", "--quiet") == 2
    _one_line_error(capsys, "--camera", "--intrinsics")
