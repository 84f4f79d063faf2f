"""Accuracy of test-time refinement: re-blur PSNR and trajectory error, before and after.

    python -m experiments.refine_examples [--steps 15] [--checkpoint CKPT]
    python -m experiments.refine_examples --data DATASET --num 24   # also a test split, every refinement mode

The first table is the shipped examples with the default refinement. With ``--data`` (a dataset built by
``wfb make-dataset``, at the model's resolution) a second table compares the refinement modes over its first
``--num`` test samples, from the networks' deblurred frame and depth, and from the true sharp frame and depth (what
refinement can do once the deblurring is right).

Trajectory errors are the mean absolute per-axis errors of wfb evaluate's Table 1, up to time reversal (a blurred
image is the same whichever way time runs), summed over the three axes: translation in cm, rotation in degrees.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.data.format import read_sample
from worldfromblur.evaluation.metrics import motion_errors
from worldfromblur.geometry import pose_from_uv
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor, load_photo, refine
from worldfromblur.reconstruct.refine import DEFAULT_STEPS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODES = {  # name: refine() options
    "smooth rotation (default)": {"motion": "smooth", "translation": False},
    "free rotation": {"motion": "free", "translation": False},
    "smooth rotation + translation": {"motion": "smooth", "translation": True},
    "free rotation + translation": {"motion": "free", "translation": True},
}


def errors(poses: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    e = motion_errors(poses.double(), gt.double(), reversal="min")
    return e["tx"] + e["ty"] + e["tz"], e["pitch"] + e["yaw"] + e["roll"]


def shipped_examples(model, steps: int, roll_prior: float | None = None) -> None:
    rows = []
    for path in sorted(EXAMPLES.glob("*.png")):
        gt = read_sample(EXAMPLES / "ground-truth" / "samples" / path.stem)
        gt_poses = torch.from_numpy(gt.poses)[None]
        photo = load_photo(path)
        base = Reconstructor(model, "cpu", refine_steps=0)(photo)
        t = time.perf_counter()
        ref = Reconstructor(model, "cpu", refine_steps=steps, refine_roll_prior=roll_prior)(photo)
        dt = time.perf_counter() - t
        zero = errors(torch.eye(4).expand_as(gt_poses), gt_poses)
        (tb, rb), (ta, ra) = errors(base.poses, gt_poses), errors(ref.poses, gt_poses)
        rows.append([path.name, f"{base.psnr:.2f}", f"{ref.psnr:.2f}", f"{tb:.2f} / {rb:.2f}", f"{ta:.2f} / {ra:.2f}",
                     f"{zero[0]:.2f} / {zero[1]:.2f}", f"{dt:.1f}"])
    print(f"shipped examples, default refinement with {steps} steps; {machine()}\n")
    print(table(["example", "re-blur PSNR network dB", "re-blur PSNR refined dB", "trajectory error network cm / deg",
                 "refined cm / deg", "zero motion cm / deg", "refined reconstruction s"], rows))


def test_split(model, data: Path, num: int, steps: int) -> None:
    ds = BlurDataset(data, "test")
    engine = Reconstructor(model, "cpu", refine_steps=0)
    count = min(num, len(ds))
    results = {"network": []}
    for i in range(count):
        item = ds[i]
        x, K, gt = item["blurred"][None], item["K"][None], item["poses"][None]
        out = engine.networks(x, K)
        u, v = out["u"], out["v"]
        results["network"].append((*errors(pose_from_uv(u, v), gt), np.nan, np.nan))
        frames = (("network frame", (out["deblurred"], out["motion_depth"])),
                  ("true frame", (item["sharp"][None], item["depth"][None])))
        for source, (s, d) in frames:
            for name, opts in MODES.items():
                r = refine(x, s, d, u, v, K, steps, **opts)
                results.setdefault((source, name), []).append(
                    (*errors(pose_from_uv(r.u, r.v), gt), r.psnr_before, r.psnr_after))
    rows = []
    for key, vals in results.items():
        a = np.array(vals)
        source, name = ("network frame", "no refinement") if key == "network" else key
        better = "" if key == "network" else f"{int((a[:, 1] < np.array(results['network'])[:, 1]).sum())}/{len(a)}"
        psnrs = "" if key == "network" else f"{np.mean(a[:, 2]):.2f} -> {np.mean(a[:, 3]):.2f}"
        rows.append([source, name, psnrs, f"{np.mean(a[:, 0]):.2f}", f"{np.mean(a[:, 1]):.2f}", better])
    print(f"\n{count} test samples of {data}, {steps} steps; {machine()}\n")
    print(table(["sharp frame and depth", "refinement", "re-blur PSNR dB", "translation error cm",
                 "rotation error deg", "rotation better than network"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="refinement iterations (default: wfb reconstruct's)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", type=Path, default=None, help="a dataset whose test split to compare the modes on")
    ap.add_argument("--num", type=int, default=24, help="test samples to use with --data")
    ap.add_argument("--refine-roll-prior", type=float, default=None, metavar="W",
                    help="weight of the default refinement's roll prior on the examples (default: wfb reconstruct's)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    shipped_examples(model, args.steps, args.refine_roll_prior)
    if args.data is not None:
        test_split(model, args.data, args.num, args.steps)


if __name__ == "__main__":
    main()
