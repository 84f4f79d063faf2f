"""Accuracy of test-time refinement on the shipped examples: re-blur PSNR and trajectory error, before and after.

    python benchmarks/refine_examples.py [--steps 100] [--checkpoint CKPT]

Trajectory errors are the mean absolute per-axis errors of wfb evaluate's Table 1, up to time reversal (a blurred
image is the same whichever way time runs), summed over the three axes: translation in cm, rotation in degrees.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import machine, table
from worldfromblur.cli.reconstruct import default_checkpoint
from worldfromblur.data.format import read_sample
from worldfromblur.evaluation.metrics import image_metrics, motion_errors
from worldfromblur.models.io import load_model
from worldfromblur.reconstruct import Reconstructor, load_photo

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def errors(poses: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    e = motion_errors(poses.double(), gt, reversal=True)
    return e["tx"] + e["ty"] + e["tz"], e["pitch"] + e["yaw"] + e["roll"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--sharp", action="store_true", help="also refine the sharp frame")
    args = ap.parse_args()
    model = load_model(args.checkpoint or default_checkpoint())[0]
    rows = []
    for path in sorted(EXAMPLES.glob("*.png")):
        gt = read_sample(EXAMPLES / "ground-truth" / "samples" / path.stem)
        gt_poses = torch.from_numpy(gt.poses)[None]
        photo = load_photo(path)
        base = Reconstructor(model, "cpu")(photo)
        t = time.perf_counter()
        ref = Reconstructor(model, "cpu", refine_steps=args.steps, refine_sharp=args.sharp)(photo)
        dt = time.perf_counter() - t
        zero = errors(torch.eye(4).expand_as(gt_poses), gt_poses)
        (tb, rb), (ta, ra) = errors(base.poses, gt_poses), errors(ref.poses, gt_poses)
        rows.append([path.name, f"{base.psnr:.2f}", f"{ref.psnr:.2f}", f"{tb:.2f} / {rb:.2f}", f"{ta:.2f} / {ra:.2f}",
                     f"{zero[0]:.2f} / {zero[1]:.2f}", f"{dt:.1f}"])
    print(f"refinement with {args.steps} steps{' (and the sharp frame)' if args.sharp else ''}; {machine()}\n")
    print(table(["example", "re-blur PSNR network dB", "re-blur PSNR refined dB", "trajectory error network cm / deg",
                 "refined cm / deg", "zero motion cm / deg", "refine s"], rows))


if __name__ == "__main__":
    main()
