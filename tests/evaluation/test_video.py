"""Rotation axes on real hand-held blur (worldfromblur.evaluation.video): the truth measured between two sharp frames,
how much of their difference it explains, the windows of a video, and the verdict the ship gate draws from them."""

import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import textured_frame
from worldfromblur.errors import WfbError
from worldfromblur.evaluation.video import (
    axis_angle,
    axis_error_deg,
    compare_video,
    evaluate_video,
    frame_paths,
    intrinsics_of,
    judged_median,
    measure_rotation,
    measure_windows,
    rotation_matrix,
    warp_by_rotation,
)


def _angle_between_deg(u: np.ndarray, v: np.ndarray) -> float:
    return math.degrees(axis_angle(rotation_matrix(u).T @ rotation_matrix(v))[1])


@pytest.fixture(scope="module")
def frames():
    """A frame, the same frame seen after a known camera rotation (mostly roll), and the intrinsics."""
    K = intrinsics_of(360, 640)
    last = textured_frame(360, 640, seed=0, cells=(8, 32, 128))
    u_true = np.radians([0.4, -0.7, 1.5])
    first = warp_by_rotation(last, torch.as_tensor(u_true), K)[0]
    return first, last, K, u_true


def test_measure_rotation_recovers_a_known_rotation(frames):
    first, last, K, u_true = frames
    u, before, after = measure_rotation(first, last, K)
    assert _angle_between_deg(u, u_true) < 0.02  # of a 1.7 degree rotation
    assert after < 0.2 * before  # the rotation explains the frames' difference: camera share above 80 %
    back = measure_rotation(last, first, K)[0]  # the reverse check: last to first is the inverse rotation
    assert _angle_between_deg(back, -u_true) < 0.05


def test_camera_share_falls_when_something_else_moves(frames):
    """A 'player' (a fifth of the frame) that moves on its own: the camera share drops; the rotation measured from
    the rest stays close."""
    first, last, K, u_true = frames
    _, before0, after0 = measure_rotation(first, last, K)
    moved = first.clone()
    moved[..., 90:270, 200:440] = torch.roll(first[..., 90:270, 200:440], shifts=(0, 25), dims=(-2, -1)).flip(-1)
    u, before, after = measure_rotation(moved, last, K)
    assert 1 - after / before < (1 - after0 / before0) - 0.15
    assert _angle_between_deg(u, u_true) < 0.5


def test_the_windows_of_a_turning_camera_and_their_truth(rotating_video):
    folder, axis, per_frame = rotating_video
    windows = measure_windows(frame_paths(folder))
    assert [w.centre for w in windows] == ["000006.png", "000016.png", "000026.png"]
    for w in windows:
        assert w.frames == 13 and abs(w.rotation_deg - 12 * per_frame) < 0.05
        assert axis_error_deg(np.asarray(w.axis), axis) < 1.0
        assert w.camera_share > 0.8


def test_a_video_scores_every_model_alike_and_the_verdict_follows_the_judged_median(rotating_video):
    """Two copies of the shipped model score the same on every window; refinement finds the synthetic camera's
    axis far better than chance (57 degrees)."""
    from worldfromblur.models.io import load_model, shipped_model

    folder, _, _ = rotating_video
    model = load_model(shipped_model())[0]
    report = evaluate_video(folder, {"model": model, "shipped": model}, refine_steps=15)
    a, b = report["models"]["model"], report["models"]["shipped"]
    assert a == b and len(a["axis_errors_deg"]) == len(report["windows"]) == 3
    assert a["judged_windows"] == 3 and a["judged_median_deg"] == a["median_deg"] < 12
    level = compare_video(a, b)
    assert not level["better"] and not level["worse"] and not level["beats_shipped"]


def test_compare_video_and_the_judged_windows():
    def scores(deg):
        return {"judged_median_deg": deg}

    assert compare_video(scores(9.0), scores(10.0))["beats_shipped"]
    within = compare_video(scores(10.9), scores(10.0))  # worse, but by less than 10 %
    assert not within["worse"] and not within["beats_shipped"]
    worse = compare_video(scores(11.2), scores(10.0))
    assert worse["worse"] == ["real rotation axis error deg, after refinement"] and not worse["beats_shipped"]
    networks = compare_video(scores(9.0), scores(10.0), refined=False)
    assert networks["better"] == ["real rotation axis error deg, networks alone"]

    class W:
        def __init__(self, share):
            self.camera_share = share

    assert judged_median([40.0, 5.0, 10.0], [W(0.1), W(0.6), W(0.5)]) == (7.5, 2)
    assert judged_median([40.0, 5.0, 10.0], [W(0.1), W(0.2), W(0.3)]) == (10.0, 3)  # none judged: all windows


def test_a_folder_that_is_no_video_is_refused(tmp_path, rotating_video):
    with pytest.raises(WfbError, match="not a folder of video frames"):
        frame_paths(tmp_path / "missing")
    (tmp_path / "000000.png").write_bytes(b"")
    with pytest.raises(WfbError, match="1 frames, fewer than one blurred window needs"):
        frame_paths(tmp_path)
    clip = tmp_path / "clip"
    shutil.copytree(rotating_video[0], clip)
    assert len(frame_paths(clip, verify=True)) == 33
    (clip / "000020.png").write_bytes(b"not an image")
    assert len(frame_paths(clip)) == 33  # headers are read only when asked
    with pytest.raises(WfbError, match="000020.png: not a readable image"):
        frame_paths(clip, verify=True)
    Image.new("RGB", (64, 36)).save(clip / "000020.png")
    with pytest.raises(WfbError, match="000020.png: 64 x 36 pixels, unlike the first frame's 320 x 180"):
        frame_paths(clip, verify=True)
