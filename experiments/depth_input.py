"""How much the depth module's error is the deblurring's: its depth from each candidate sharp frame.

    python -m experiments.depth_input DATASET [--num 1000] [--checkpoint CKPT]

On the test samples of a dataset built by ``wfb make-dataset`` (at the model's size), the model's depth module
(with its metric scale, :meth:`WorldFromBlur.metric_depth`) reads

* the blurred input itself;
* the network's deblurred frame (what the pipeline does);
* that frame deconvolved with the refined trajectory (``wfb reconstruct --deconvolve``'s solve at this size);
* the true sharp frame: what a perfect deblurrer would give the depth module.

Depth metrics as ``wfb evaluate``'s Table 3 (Abs Rel, RMSE in metres, delta < 1.25), mean over the samples.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.common import refined_samples
from worldfromblur.evaluation.metrics import depth_metrics
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.deconvolve import deconvolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=1000, help="first N test samples (default 1000)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    scores: dict[str, list[list[float]]] = {}
    t0 = time.perf_counter()
    for s, o, r in refined_samples(model, args.data, args.num):
        B, K = s["blurred"], s["K"]
        frames = {"blurred input": B, "network's deblurred frame (the pipeline)": o["deblurred"],
                  "deconvolved with the refined trajectory": deconvolve(B, o["deblurred"], o["depth"], r.u, r.v, K,
                                                                        tile=0),
                  "true sharp frame": s["sharp"]}
        with torch.no_grad():
            for name, x in frames.items():
                m = depth_metrics(model.metric_depth(x, K), s["depth"], s["valid_depth"])
                scores.setdefault(name, []).append([m["abs_rel"], m["rmse"], m["a1"]])
    n = len(next(iter(scores.values())))
    rows = [[name, *(f"{x:.3f}" for x in np.mean(v, axis=0))] for name, v in scores.items()]
    print(f"{n} test samples of {args.data}; {machine()}, {time.perf_counter() - t0:.0f} s\n")
    print(table(["the depth module reads", "Abs Rel", "RMSE (m)", "δ < 1.25"], rows))


if __name__ == "__main__":
    main()
