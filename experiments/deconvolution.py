"""Full-resolution deconvolution with the refined motion, on real camera motion (high-frame-rate video).

    python -m experiments.deconvolution FRAMES_DIR [--every 20] [--lengths 9 11 13] [--weights 0.1 0.3 1]

Blurred images are made as ``experiments/fullres_deblur.py`` makes them (consecutive sharp frames of 240 fps video
averaged in linear light; the centre frame is the truth). Each is reconstructed by ``wfb reconstruct``'s engine with
the shipped model and the default refinement; the table compares, at the frames' own size (PSNR in dB, and the time
on this machine):

* blurred: the input;
* network: ``wfb reconstruct``'s deblurred frame (multi-scale fusion of the deblurring network);
* network + deconvolution (lambda): :func:`worldfromblur.reconstruct.deconvolve.deconvolve` from the network's frame
  with the refined trajectory and the upsampled depth, at each ``--weights`` lambda;
* the same from the networks' trajectory without refinement (``--fast``), at the default lambda.

A second table keeps the windows whose **camera share** is at least ``--camera-share`` (default 0.5): the share of
the first and last frames' grey difference that the rotation measured between them removes
(:mod:`worldfromblur.evaluation.video`), i.e. the windows whose blur is the camera's, not a moving subject's.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import machine, table
from benchmarks.video import read, video_arguments, video_frames, windows
from worldfromblur.evaluation.metrics import psnr
from worldfromblur.evaluation.video import (
    CAMERA_SHARE,
    camera_share_of,
    intrinsics_of,
    measure_rotation,
)
from worldfromblur.imaging import blur_frames
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor
from worldfromblur.reconstruct.deconvolve import DEFAULT_WEIGHT, ROBUST, deconvolve
from worldfromblur.reconstruct.photo import Photo


def main() -> None:
    ap = video_arguments(__doc__)
    ap.add_argument("--weights", type=float, nargs="+", default=sorted({0.1, DEFAULT_WEIGHT, 1.0}),
                    help="deconvolution lambdas to compare")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N windows (0: all)")
    ap.add_argument("--robust", type=float, default=ROBUST,
                    help=f"the deconvolution's robust pass, Huber threshold (default {ROBUST:g}; 0: none)")
    ap.add_argument("--camera-share", type=float, default=CAMERA_SHARE,
                    help=f"second table: the windows whose camera share is at least this (default {CAMERA_SHARE:g})")
    args = ap.parse_args()
    frames = video_frames(args)
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    refined, fast = Reconstructor(model, "cpu"), Reconstructor(model, "cpu", refine_steps=0)
    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    shares: list[float] = []
    todo = windows(frames, args.every, args.lengths)
    for c, n in todo[:args.limit or None]:
        stack = torch.stack([read(p) for p in frames[c - n // 2:c + n // 2 + 1]])
        _, before, after = measure_rotation(stack[:1], stack[-1:], intrinsics_of(*stack.shape[-2:]))
        shares.append(camera_share_of(before, after))
        blurred, sharp = blur_frames(stack, 0)[None], stack[n // 2][None]
        photo = Photo(path=frames[c], rgb=blurred[0].permute(1, 2, 0).numpy(), mode="RGB")
        results = {"blurred": (blurred, 0.0)}
        for tag, engine in (("", refined), (" (no refinement)", fast)):
            t = time.perf_counter()
            rec = engine(photo)
            results[f"network{tag}"] = (rec.out.deblurred, time.perf_counter() - t)
            view = rec.out
            for lam in (args.weights if not tag else [DEFAULT_WEIGHT]):
                t = time.perf_counter()
                x = deconvolve(view.blurred, view.deblurred, view.depth, rec.u, rec.v, view.K, weight=lam,
                               robust=args.robust)
                results[f"network + deconvolution{tag}, lambda {lam:g}"] = (x, time.perf_counter() - t)
        for name, (x, dt) in results.items():
            scores.setdefault(name, []).append(psnr(x, sharp))
            seconds.setdefault(name, []).append(dt)
    W, H = blurred.shape[-1], blurred.shape[-2]
    print(f"{len(shares)} blurred frames of {W}x{H} from {args.frames} (lengths {args.lengths}, linear light); "
          f"{machine()}")
    for title, keep in (("all windows", [True] * len(shares)),
                        (f"camera share >= {args.camera_share:.0%}", [x >= args.camera_share for x in shares])):
        if not any(keep):
            print(f"\n{title}: none")
            continue
        pick = {name: [x for x, k in zip(v, keep) if k] for name, v in scores.items()}
        base = pick["blurred"]
        rows = [[name, f"{statistics.mean(v):.2f}", f"{statistics.mean(v) - statistics.mean(base):+.2f}",
                 f"{sum(a > b for a, b in zip(v, base))}/{len(v)}",
                 f"{statistics.median([t for t, k in zip(seconds[name], keep) if k]):.1f}"]
                for name, v in pick.items()]
        print(f"\n{title} ({sum(keep)})\n")
        print(table(["method", "PSNR dB", "vs blurred", "frames improved", "median s (reconstruct / deconvolution)"],
                    rows))


if __name__ == "__main__":
    main()
