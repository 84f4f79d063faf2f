"""Gyroscope captures: reading the folder layout and integrating rates into the rotation of an exposure."""

import math

import numpy as np
import pytest
from PIL import Image

from worldfromblur.errors import WfbError
from worldfromblur.evaluation.gyro import exposure_rotation, read_capture
from worldfromblur.evaluation.video import axis_angle, rotation_matrix


def _capture(root, photos=2, images_txt=None, imu_txt=None):
    (root / "images").mkdir(parents=True)
    (root / "imu").mkdir()
    for i in range(photos):
        Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(root / "images" / f"{i + 1:04d}.jpg")
    (root / "images" / "images.txt").write_text(
        images_txt if images_txt is not None else "1000000000 20000000\n1033333333 20000000\n")
    (root / "imu" / "imu.txt").write_text(imu_txt if imu_txt is not None else (
        "2 999000000 -60.1 -3.9 -7.3\n"  # accelerometer: skipped
        "4 1005000000 -3.0 -0.1 -0.5\n"
        "1 1005000000 8.0 -0.9 5.7\n"
        "4 1015000000 -3.2 -0.1 -0.5\n"
        "4 1025000000 -3.4 -0.2 -0.5\n"))
    return root


def test_read_capture_keeps_the_gyroscope_lines_and_counts_time_from_the_first_samples(tmp_path):
    cap = read_capture(_capture(tmp_path / "cap"))
    assert [p.name for p in cap.photos] == ["0001.jpg", "0002.jpg"]
    np.testing.assert_allclose(cap.starts, [0.0, 0.033333333])
    np.testing.assert_allclose(cap.exposures, [0.02, 0.02])
    np.testing.assert_allclose(cap.gyro_times, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(cap.rates, [[-3.0, -0.1, -0.5], [-3.2, -0.1, -0.5], [-3.4, -0.2, -0.5]])


@pytest.mark.parametrize("case, message", [
    ({"images_txt": "1000000000 20000000\n"}, "one 'TIMESTAMP_NS EXPOSURE_NS' line per photo"),
    ({"images_txt": "1000000000 fast\n1033333333 20000000\n"}, "not a table of numbers"),
    ({"imu_txt": "2 1 0 0 0\n4 5 1 2 3\n"}, "at least two gyroscope lines"),
    ({"imu_txt": "4 9 1 2 3\n4 5 1 2 3\n"}, "increasing timestamps"),
])
def test_read_capture_refuses_a_broken_folder_in_one_line(tmp_path, case, message):
    with pytest.raises(WfbError, match=message) as e:
        read_capture(_capture(tmp_path / "cap", **case))
    assert "\n" not in str(e.value)


def test_read_capture_names_a_missing_file(tmp_path):
    root = _capture(tmp_path / "cap")
    (root / "imu" / "imu.txt").unlink()
    with pytest.raises(WfbError, match="imu.txt: not found"):
        read_capture(root)


def test_a_constant_rate_integrates_to_a_rotation_about_it():
    times = np.linspace(0.0, 0.1, 11)
    w = np.array([0.3, -3.1, 0.5])
    axis, angle = axis_angle(exposure_rotation(times, np.tile(w, (11, 1)), 0.02, 0.04))
    np.testing.assert_allclose(axis, w / np.linalg.norm(w), atol=1e-9)
    assert angle == pytest.approx(np.linalg.norm(w) * 0.02, rel=1e-9)


def test_rates_are_composed_in_the_moving_cameras_axes():
    """About x for the first half of the interval, then about y: the rotation is R_x R_y (the second turn made in
    the camera's axes after the first), not R_y R_x."""
    times = np.array([0.0, 0.5 - 1e-9, 0.5 + 1e-9, 1.0])
    rates = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]])
    R = exposure_rotation(times, rates, 0.0, 1.0, steps=1000)
    expected = rotation_matrix(np.array([0.5, 0, 0])) @ rotation_matrix(np.array([0, 0.5, 0]))
    np.testing.assert_allclose(R, expected, atol=2e-3)
    other = rotation_matrix(np.array([0, 0.5, 0])) @ rotation_matrix(np.array([0.5, 0, 0]))
    assert np.abs(R - other).max() > 0.05


def test_an_interval_off_the_gyroscope_is_refused_beyond_one_sample():
    times = np.array([0.0, 0.01, 0.02])
    rates = np.ones((3, 3))
    exposure_rotation(times, rates, -0.009, 0.01)  # within one sampling interval: held at the first rate
    with pytest.raises(WfbError, match="check the time offset"):
        exposure_rotation(times, rates, -0.02, 0.01)
    with pytest.raises(WfbError, match="not inside"):
        exposure_rotation(times, rates, 0.015, 0.015)
    assert axis_angle(exposure_rotation(times, rates, 0.0, 0.02))[1] == pytest.approx(math.sqrt(3) * 0.02)
