"""Leave the photo alone where it is not blurred: the network's frame blended toward the input by the blur length.

    python -m experiments.blur_gate DATASET [--num 120] [--ramps 0.5,2 1,3] [--checkpoint CKPT]

On rooms no pool contains the shipped deblurrer loses about 2 dB on nearly sharp samples (it smooths texture that is
really there) and gains on blurred ones. The camera's trajectory says where the photo is blurred: each reference
pixel's path over the exposure, ``p' = K T D(p) K^-1 p`` through the 2n + 1 instants, has a length in pixels. This
experiment returns ``input + w (network - input)`` with ``w`` rising linearly from 0 to 1 as that length goes from
the ramp's first to its second value, per pixel, with the path measured three ways:

* ``networks``: the networks' trajectory and depth (what the model has before refinement);
* ``refined``: the trajectory after ``wfb reconstruct``'s default refinement, with the networks' depth;
* ``true``: the dataset's own poses and depth (an upper bound on what the gate can give).

It prints the mean PSNR of each frame over the test samples, and per row of ``wfb evaluate``'s Table 2b (the
samples' median true pixel path: under 3, 3-8, 8-16, 16 or more px), on a dataset built by ``wfb make-dataset`` at
the model's size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.common import refined_samples
from worldfromblur.evaluation.metrics import image_psnrs
from worldfromblur.evaluation.report import blur_lengths, by_blur
from worldfromblur.geometry import path_steps, pose_from_uv, trajectory_with_reference
from worldfromblur.models.io import load_model, shipped_model


def path_length(depth: torch.Tensor, poses: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) length in pixels of each reference pixel's path through the exposure's 2n + 1 instants, in time
    order, from its depth (1, 1, H, W), the 2n poses (1, 2n, 4, 4) and K (1, 3, 3)."""
    return path_steps(depth, trajectory_with_reference(poses), K).sum(1, keepdim=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=120, help="first N test samples (default 120)")
    ap.add_argument("--ramps", nargs="+", default=["0.5,2", "1,3"],
                    help="path lengths (px) where the blend starts and ends, each FROM,TO (default 0.5,2 1,3)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    ramps = [tuple(float(x) for x in r.split(",")) for r in args.ramps]
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    psnrs: dict[str, list[float]] = {}
    lengths: list[float] = []
    t0 = time.perf_counter()
    for s, o, r in refined_samples(model, args.data, args.num):
        B, S, K = s["blurred"], s["sharp"], s["K"]
        true_depth = s["depth"].clone()
        true_depth[true_depth <= 0] = true_depth[true_depth > 0].median() if (true_depth > 0).any() else 2.0
        with torch.no_grad():
            paths = {"networks'": path_length(o["motion_depth"], pose_from_uv(o["u"], o["v"]), K),
                     "refined": path_length(o["motion_depth"], pose_from_uv(r.u, r.v), K),
                     "true": path_length(true_depth, s["poses"].to(true_depth.dtype), K)}
        lengths += list(blur_lengths(s["depth"], s["poses"], K))
        N = o["deblurred"]
        psnrs.setdefault("blurred input", []).append(image_psnrs(B, S)[0])
        psnrs.setdefault("network's frame (the pipeline)", []).append(image_psnrs(N, S)[0])
        for (a, b) in ramps:
            for name, length in paths.items():
                w = ((length - a) / (b - a)).clamp(0, 1)
                psnrs.setdefault(f"gated by the {name} path, {a:g} to {b:g} px", []).append(
                    image_psnrs(B + w * (N - B), S)[0])
    counts = by_blur(lengths, lengths)  # the rows of Table 2b, with their sample counts
    header = ["frame", "PSNR dB"] + [f"{r['from_px']:g}-{r['to_px']:g} px ({r['samples']})" if r["to_px"] is not None
                                     else f"{r['from_px']:g}+ px ({r['samples']})" for r in counts]
    rows = [[name, f"{np.mean(v):.2f}"] + ["-" if r["psnr"] is None else f"{r['psnr']:.2f}" for r in by_blur(lengths, v)]
            for name, v in psnrs.items()]
    print(f"{len(lengths)} test samples of {args.data}; {machine()}, {time.perf_counter() - t0:.0f} s\n")
    print(table(header, rows))


if __name__ == "__main__":
    main()
