"""Rotation axes on real blurred frames: the reconstructed exposure's rotation against a measured one.

    python -m experiments.real_motion SEQUENCE [--camera freiburg1 | --intrinsics FX FY CX CY] [--min-rate 100]
                                     [--window 0.0333] [--limit 16] [--steps 15]

SEQUENCE is a TUM RGB-D folder (``rgb.txt``, ``rgb/``, ``groundtruth.txt``: camera-to-world poses from motion
capture, or any other tracking). Its colour frames are real photographs, blurred by the camera's own motion. For
every frame where the measured camera turns at ``--min-rate`` degrees per second or more (the rotation between the
poses ``--window / 2`` before and after the frame's time), the frame is reconstructed by ``wfb reconstruct``'s
engine with the shipped model, without refinement and with the default refinement, and the table gives, per frame,
the measured rate and how much of it is roll (rotation about the optical axis), and for each method the angle
between the measured rotation axis and the reconstructed one (the rotation from the exposure's first to its last
instant), up to sign (a blurred image is the same whichever way time runs; random axes score 57 degrees median),
and the reconstructed rotation's size. The last row is the median.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np

from benchmarks.common import machine, table
from worldfromblur.data.rgbd.readers import (
    interpolate_poses,
    read_timed_files,
    read_trajectory,
    tum_camera,
)
from worldfromblur.evaluation.video import (
    axis_angle,
    axis_error_deg,
    reconstructed_rotation,
)
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor, load_photo


def measured_rotation(times, poses, t: float, window: float):
    """The camera's rotation over [t - window/2, t + window/2], in the camera's frame, or None off the trajectory."""
    a = interpolate_poses(times, poses, t - window / 2, max_gap=0.05)
    b = interpolate_poses(times, poses, t + window / 2, max_gap=0.05)
    if a is None or b is None:
        return None
    return a[:3, :3].T @ b[:3, :3]  # camera at the start -> camera at the end, in the start camera's axes


def engines_for(model, steps: int | None = None, **options) -> dict:
    """``wfb reconstruct``'s engine without refinement ("network") and with it ("refined", ``steps`` iterations or
    the default)."""
    refined = Reconstructor(model, "cpu", **options) if steps is None else Reconstructor(model, "cpu", refine_steps=steps, **options)
    return {"network": Reconstructor(model, "cpu", refine_steps=0, **options), "refined": refined}


def score_axes(engines: dict, photo, intrinsics: list[float], axis: np.ndarray, errors: dict) -> list[str]:
    """Each engine's axis error (degrees, up to sign) and reconstructed rotation for one photo, as table cells;
    the errors are appended to ``errors[name]``."""
    cells = []
    for name, engine in engines.items():
        pred_axis, pred_angle = axis_angle(reconstructed_rotation(engine(photo, intrinsics)))
        err = axis_error_deg(axis, pred_axis)
        errors[name].append(err)
        cells += [f"{err:.1f}", f"{math.degrees(pred_angle):.2f}"]
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sequence", type=Path, help="a TUM RGB-D folder with groundtruth.txt")
    ap.add_argument("--camera", default=None, help="freiburg1|freiburg2|freiburg3 (default: from the folder name)")
    ap.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), default=None)
    ap.add_argument("--min-rate", type=float, default=100.0, help="degrees per second (default 100)")
    ap.add_argument("--window", type=float, default=1 / 30, help="seconds the measured rotation spans (default 1/30)")
    ap.add_argument("--limit", type=int, default=16, help="the fastest-turning N frames (default 16; 0: all)")
    ap.add_argument("--steps", type=int, default=None, help="refinement iterations (default: wfb reconstruct's)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    root = args.sequence
    intrinsics = args.intrinsics or list(tum_camera(root, args.camera))
    times, poses = read_trajectory(root / "groundtruth.txt")
    picked = []
    for t, path in read_timed_files(root / "rgb.txt"):
        R = measured_rotation(times, poses, t, args.window)
        if R is None:
            continue
        axis, angle = axis_angle(R)
        rate = math.degrees(angle) / args.window
        if rate >= args.min_rate:
            picked.append((rate, t, path, axis))
    picked.sort(key=lambda x: -x[0])
    picked = picked[:args.limit or None]
    if not picked:
        raise SystemExit(f"{root}: no frame turns at {args.min_rate:g} deg/s or more; lower --min-rate")
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    engines = engines_for(model, args.steps)
    rows, errors = [], {k: [] for k in engines}
    for rate, _, path, axis in picked:
        row = [path.name, f"{rate:.0f}", f"{abs(axis[2]) ** 2 * 100:.0f} %"]
        rows.append(row + score_axes(engines, load_photo(path), intrinsics, axis, errors))
    rows.append(["**median**", f"{statistics.median(p[0] for p in picked):.0f}", "",
                 f"**{statistics.median(errors['network']):.1f}**", "",
                 f"**{statistics.median(errors['refined']):.1f}**", ""])
    print(f"{len(picked)} frames of {root} turning at {args.min_rate:g} deg/s or more over {args.window * 1000:.0f} ms; "
          f"{machine()}\n")
    print(table(["frame", "deg/s", "roll share", "axis error, network (deg)", "rotation, network (deg)",
                 "axis error, refined (deg)", "rotation, refined (deg)"], rows))


if __name__ == "__main__":
    main()
