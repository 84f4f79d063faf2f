"""Rotation axes on real photos blurred by a fast-turning hand-held camera, with the truth from its gyroscope.

    python -m experiments.gyro_rotation CAPTURE [--intrinsics FX FY CX CY] [--imu-to-camera 9 NUMBERS]
                                        [--readout SECONDS] [--offset SECONDS] [--steps 15] [--refine-robust K]
                                        [--checkpoint RUN]

CAPTURE is a folder of photos with their exposure times and gyroscope samples (layout:
:mod:`worldfromblur.evaluation.gyro`), e.g. ``preprocess/myrawdata`` of ``jannemus/DeepGyro``: 7 consecutive
1920 x 1080 photos of an office taken by an NVIDIA Shield tablet turning at 180-210 degrees per second (20 ms
exposures, 30 fps, gyroscope at 100 Hz), a room no training pool contains. Its calibration (in that repository's
``preprocess/calibration.py``) is the default of the options: intrinsics, the IMU-to-camera axes, the rolling
shutter's readout time and the IMU-camera time offset.

For each photo, the truth is the gyroscope's rotation over the exposure of the photo's middle row. Two checks say
how far it can be trusted: **images**, the angle between the rotation axis that aligns each photo with the next
(measured from the photos alone, as :mod:`experiments.video_rotation` measures a video's) and the gyroscope's
rotation between their middle-row mid-exposure times; and the ratio of the two rotations' sizes (a focal length or
gyroscope scale error shows there, not in the axes). Each photo is then reconstructed by ``wfb reconstruct``'s
engine with the given intrinsics, without refinement and with the default refinement, and scored by the angle
between the gyroscope's and the reconstructed rotation axes, up to sign (a blurred photo is the same whichever way
time runs; random axes score 57 degrees median), beside the size of each rotation. The last row is the median.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.real_motion import engines_for, score_axes
from worldfromblur.evaluation.gyro import exposure_rotation, read_capture
from worldfromblur.evaluation.video import axis_angle, axis_error_deg, measure_rotation
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import load_photo

SHIELD = {"intrinsics": [1558.6899, 1558.6899, 939.6533, 518.4131], "imu_to_camera": [0, 1, 0, 1, 0, 0, 0, 0, 1],
          "readout": 0.0244944, "offset": 0.022}
"""The calibration of the NVIDIA Shield tablet of ``jannemus/DeepGyro`` (its ``preprocess/calibration.py``)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path, help="folder with images/, images/images.txt and imu/imu.txt")
    ap.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), default=SHIELD["intrinsics"],
                    help="of the photos, pixels (default: the Shield tablet's)")
    ap.add_argument("--imu-to-camera", type=float, nargs=9, default=SHIELD["imu_to_camera"],
                    help="3 x 3 matrix, row by row: a rate w in the IMU's axes is w @ M in the camera's")
    ap.add_argument("--readout", type=float, default=SHIELD["readout"], help="rolling-shutter readout time, s")
    ap.add_argument("--offset", type=float, default=SHIELD["offset"], help="IMU-camera time offset, s")
    ap.add_argument("--steps", type=int, default=None, help="refinement iterations (default: wfb reconstruct's)")
    ap.add_argument("--refine-robust", type=float, default=None, help="Huber threshold of the refinement (default: "
                    "wfb reconstruct's)")
    ap.add_argument("--refine-roll-prior", type=float, default=None, metavar="W",
                    help="weight of the refinement's roll prior (default: wfb reconstruct's)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    cap = read_capture(args.capture)
    rates = cap.rates @ np.array(args.imu_to_camera).reshape(3, 3)
    times = cap.gyro_times + args.offset
    mid = cap.starts + args.readout / 2  # the middle row's start of exposure
    fx, fy, cx, cy = args.intrinsics
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64)
    photos = [load_photo(p) for p in cap.photos]
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    options = {} if args.refine_robust is None else {"refine_robust": args.refine_robust}
    if args.refine_roll_prior is not None:
        options["refine_roll_prior"] = args.refine_roll_prior
    engines = engines_for(model, args.steps, **options)
    rows, errors, checks = [], {k: [] for k in engines}, []
    for i, (path, photo) in enumerate(zip(cap.photos, photos)):
        R = exposure_rotation(times, rates, mid[i], mid[i] + cap.exposures[i])
        axis, angle = axis_angle(R)
        check, ratio = "", ""
        if i + 1 < len(photos):  # the photos' own rotation to the next one against the gyroscope's
            a, b = (torch.from_numpy(p.rgb).permute(2, 0, 1)[None] for p in photos[i:i + 2])
            u, _, _ = measure_rotation(a, b, K, width=480)
            G = exposure_rotation(times, rates, mid[i] + cap.exposures[i] / 2, mid[i + 1] + cap.exposures[i + 1] / 2)
            g_axis, g_angle = axis_angle(G)
            checks.append(axis_error_deg(u / np.linalg.norm(u), g_axis))
            check, ratio = f"{checks[-1]:.1f}", f"{np.linalg.norm(u) / g_angle:.2f}"
        rate = math.degrees(angle) / cap.exposures[i]
        blur = fx * angle  # pixels at the photo's size, about the optical centre
        row = [path.name, f"{rate:.0f}", f"{axis[2] ** 2 * 100:.0f} %", f"{blur:.0f}", check, ratio]
        rows.append(row + score_axes(engines, photo, args.intrinsics, axis, errors))
    rows.append(["**median**", "", "", "", f"{statistics.median(checks):.1f}", "",
                 f"**{statistics.median(errors['network']):.1f}**", "",
                 f"**{statistics.median(errors['refined']):.1f}**", ""])
    print(f"{len(photos)} photos of {args.capture}; {machine()}\n")
    print(table(["photo", "gyro deg/s", "roll share", "blur px", "images vs gyro (deg)", "size ratio",
                 "axis error, network (deg)", "rotation, network (deg)", "axis error, refined (deg)",
                 "rotation, refined (deg)"], rows))


if __name__ == "__main__":
    main()
