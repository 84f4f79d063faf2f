"""The refinement's roll prior, weight by weight, on the test samples of a dataset.

    python -m experiments.roll_prior DATASET [--num 40] [--weights 0 0.03 0.1] [--checkpoint CKPT]

On ``--num`` test samples spread evenly over a dataset built by ``wfb make-dataset`` (at the model's size), the
default refinement (15 Levenberg-Marquardt iterations on a smooth rotation, from the networks' frame, depth and
trajectory) with each roll-prior weight W (a roll of 1 degree at the exposure's ends costs W times a level's
starting misfit; ``wfb reconstruct --refine-roll-prior``): rotation errors up to reversal per axis (``wfb
evaluate``'s means, degrees), the refined re-blur PSNR and how many samples kept the networks' trajectory because
the refined one fitted worse.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.refine_inputs import AXES, spread_samples
from worldfromblur.evaluation.metrics import motion_errors
from worldfromblur.geometry import pose_from_uv
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.refine import DEFAULT_STEPS, refine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=40, help="test samples, spread evenly over the split (default 40)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.03, 0.1], help="roll-prior weights")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    count, samples = spread_samples(args.data, args.num)
    rows = {w: {"errors": [], "psnr": [], "kept": 0} for w in args.weights}
    zero = []
    t0 = time.perf_counter()
    for s in samples:
        with torch.no_grad():
            o = model(s["blurred"], s["K"])
        m = motion_errors(torch.eye(4).expand_as(s["poses"]), s["poses"], reversal="min")
        zero.append([m[k] for k in AXES])
        for w, row in rows.items():
            r = refine(s["blurred"], o["deblurred"], o["motion_depth"], o["u"], o["v"], s["K"], DEFAULT_STEPS,
                       averaging=model.cfg.averaging, roll_prior=w)
            m = motion_errors(pose_from_uv(r.u, r.v).detach(), s["poses"], reversal="min")
            row["errors"].append([m[k] for k in AXES])
            row["psnr"].append(r.psnr_after)
            row["kept"] += r.fallback is not None
    out = [["zero motion", *(f"{x:.3f}" for x in np.mean(zero, axis=0)), "", ""]]
    out += [[f"refined, roll prior {w:g}", *(f"{x:.3f}" for x in np.mean(row["errors"], axis=0)),
             f"{np.mean(row['psnr']):.2f}", str(row["kept"])] for w, row in rows.items()]
    print(f"{count} test samples of {args.data}; {machine()}, {time.perf_counter() - t0:.0f} s\n")
    print(table(["rotation from", *(f"{a} (°)" for a in AXES), "re-blur PSNR (dB)", "networks' kept"], out))


if __name__ == "__main__":
    main()
