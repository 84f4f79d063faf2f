"""Real blurred photos with the camera's rotation measured by a gyroscope during each exposure.

A phone or tablet records its gyroscope while it takes photos; integrating the angular rate over a photo's exposure
gives the rotation that blurred it, independently of the image. :func:`read_capture` reads a capture folder in the
layout of the sample data of Mustaniemi et al., "Gyroscope-Aided Motion Deblurring with Deep Networks" (WACV 2019;
``jannemus/DeepGyro``, ``preprocess/myrawdata``)::

    images/*.jpg        the photos, in time order
    images/images.txt   one line per photo: start-of-exposure timestamp and exposure time, nanoseconds
    imu/imu.txt         inertial samples: "4 TIMESTAMP_NS WX WY WZ" are gyroscope rates (rad/s); other lines are skipped

and :func:`exposure_rotation` integrates the rates over a time interval. The time and axes conventions are the
ones of that capture's own preprocessing: timestamps count from the first photo and from the first gyroscope
sample, the gyroscope's shifted by an offset ``td``; rows of a rolling-shutter photo start their exposure
``readout / H`` apart, so the middle row is exposed over ``[t + readout / 2, t + readout / 2 + exposure]``; a rate
vector ``w`` in the sensor's axes is ``w @ imu_to_camera`` in the camera's (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WfbError
from .video import rotation_matrix

GYRO_TAG = 4
"""The first column of a gyroscope line in ``imu.txt``."""


@dataclass
class Capture:
    photos: list[Path]  # in time order
    starts: np.ndarray  # (N,) start of each photo's exposure, seconds from the first photo's
    exposures: np.ndarray  # (N,) exposure times, seconds
    gyro_times: np.ndarray  # (M,) seconds from the first gyroscope sample (before any offset)
    rates: np.ndarray  # (M, 3) angular rates in the sensor's axes, rad/s


def _table(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise WfbError(f"{path}: not found; a capture folder holds images/images.txt and imu/imu.txt ({what})")
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return np.array([[float(x) for x in row] for row in rows], dtype=np.float64)
    except ValueError as e:
        raise WfbError(f"{path}: not a table of numbers ({e}); expected {what}") from None


def read_capture(root: Path) -> Capture:
    """The photos, their exposure times and the gyroscope samples of a capture folder (module docstring)."""
    root = Path(root)
    photos = sorted(p for p in (root / "images").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    info = _table(root / "images" / "images.txt", "'TIMESTAMP_NS EXPOSURE_NS' per photo")
    if info.ndim != 2 or info.shape[1] != 2 or len(info) != len(photos):
        raise WfbError(f"{root / 'images' / 'images.txt'}: needs one 'TIMESTAMP_NS EXPOSURE_NS' line per photo in "
                       f"{root / 'images'} ({len(photos)} photos)")
    imu = _table(root / "imu" / "imu.txt", "'4 TIMESTAMP_NS WX WY WZ' gyroscope lines")
    gyro = imu[imu[:, 0] == GYRO_TAG] if imu.ndim == 2 and imu.shape[1] >= 5 else np.zeros((0, 5))
    if len(gyro) < 2 or np.any(np.diff(gyro[:, 1]) <= 0):
        raise WfbError(f"{root / 'imu' / 'imu.txt'}: needs at least two gyroscope lines '4 TIMESTAMP_NS WX WY WZ' "
                       "with increasing timestamps")
    return Capture(photos, (info[:, 0] - info[0, 0]) * 1e-9, info[:, 1] * 1e-9, (gyro[:, 1] - gyro[0, 1]) * 1e-9,
                   gyro[:, 2:5])


def exposure_rotation(times: np.ndarray, rates: np.ndarray, t0: float, t1: float, steps: int = 200) -> np.ndarray:
    """The rotation (3 x 3) from the camera at ``t0`` to the camera at ``t1`` in the ``t0`` camera's axes, from
    angular rates (N, 3) sampled at ``times`` (linearly interpolated, ``steps`` sub-intervals, each a rotation about
    its mid-point rate). Up to one sampling interval beyond the first or last sample, the rate is held at that
    sample's; further out, or for ``t1 <= t0``, it raises."""
    gap = float(np.median(np.diff(times)))
    if not (times[0] - gap <= t0 < t1 <= times[-1] + gap):
        raise WfbError(f"the interval [{t0:.4f}, {t1:.4f}] s is not inside the gyroscope's [{times[0]:.4f}, "
                       f"{times[-1]:.4f}] s (sampled every {gap * 1000:.1f} ms); check the time offset")
    edges = np.linspace(t0, t1, steps + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    w = np.stack([np.interp(mids, times, rates[:, k]) for k in range(3)], 1)
    R = np.eye(3)
    for wk, dt in zip(w, np.diff(edges)):
        R = R @ rotation_matrix(wk * dt)
    return R
