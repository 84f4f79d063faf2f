"""Blind deconvolution by alternation: refine the motion against the deconvolved frame, deconvolve again, repeat.

    python -m experiments.alternate DATASET [--num 40] [--rounds 3] [--weight 0.3] [--iterations 8]
                                    [--anchor network|previous] [--motion-once] [--checkpoint CKPT]

``wfb reconstruct`` refines the trajectory against the network's deblurred frame S_0. Where that frame is still
soft or wrong, the motion that re-blurs it into the photo best is not the camera's, and the deconvolution
(``--deconvolve``) built on that motion inherits its error. Round k here refines the motion from round k-1's
answer against S_k and deconvolves with it,

    (u_k, v_k) = refine(B, S_k, D, u_{k-1}, v_{k-1}),   S_{k+1} = deconvolve(B, init=S_k, prior=S_p, D, u_k, v_k),

with the prior S_p the previous round's frame (``--anchor previous``, the default: each round moves on from the
last) or the network's (``--anchor network``). Round 0 is what ``wfb reconstruct --deconvolve`` does; every round
refines with its default iterations and roll prior. Printed per round, on the first ``--num`` test samples of a
dataset built by ``wfb make-dataset`` at the model's size: deblurring PSNR against the sharp frame, and the rotation
error up to time reversal (mean over the 2n instants, degrees) against the dataset's poses (on the input's row, zero
motion's).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.common import deconvolution_arguments, refined_samples
from worldfromblur.evaluation.metrics import motion_errors, psnr
from worldfromblur.geometry import pose_from_uv
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.deconvolve import deconvolve
from worldfromblur.reconstruct.refine import DEFAULT_STEPS, refine


def main() -> None:
    ap = deconvolution_arguments(__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="refine-then-deconvolve rounds (default 3)")
    ap.add_argument("--motion-once", action="store_true",
                    help="refine the motion in round 0 only (then the rounds only deconvolve again)")
    ap.add_argument("--anchor", choices=("network", "previous"), default="previous",
                    help="the deconvolution's prior: the previous round's frame (default), or the network's")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    psnrs: dict[str, list[float]] = {}
    poses: dict[str, list[torch.Tensor]] = {}
    truth: list[torch.Tensor] = []

    def keep(name: str, frame: torch.Tensor, sharp: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
        psnrs.setdefault(name, []).append(psnr(frame, sharp))
        poses.setdefault(name, []).append(pose_from_uv(u, v))

    t0 = time.perf_counter()
    for s, o, r in refined_samples(model, args.data, args.num):  # round 0's refinement: wfb reconstruct's
        B, K, D, S0 = s["blurred"], s["K"], o["motion_depth"], o["deblurred"]
        truth.append(s["poses"])
        keep("blurred input (zero motion)", B, s["sharp"], torch.zeros_like(o["u"]), torch.zeros_like(o["v"]))
        keep("networks", S0, s["sharp"], o["u"], o["v"])
        u, v, S = r.u, r.v, S0
        for k in range(args.rounds):
            if k > 0 and not args.motion_once:
                r = refine(B, S, D, u, v, K, DEFAULT_STEPS, averaging=model.cfg.averaging)
                u, v = r.u, r.v
            with torch.no_grad():
                S = deconvolve(B, S, o["depth"], u, v, K, weight=args.weight, iterations=args.iterations,
                               robust=args.robust, tile=0, prior=S0 if args.anchor == "network" else S)
            keep(f"round {k}", S, s["sharp"], u, v)
    n = len(truth)
    G = torch.cat(truth)
    base = float(np.mean(psnrs["blurred input (zero motion)"]))
    rows = []
    for name, p in poses.items():
        m = motion_errors(torch.cat(p), G, reversal="min")
        rot = (m["yaw"] + m["pitch"] + m["roll"]) / 3
        score = float(np.mean(psnrs[name]))
        axes = f"{m['yaw']:.3f} / {m['pitch']:.3f} / {m['roll']:.3f}"
        rows.append([name, f"{score:.2f}", f"{score - base:+.2f}", axes, f"{rot:.3f}"])
    print(f"{n} test samples of {args.data}; lambda {args.weight:g}, {args.iterations} iterations, robust "
          f"{args.robust:g}, refinement {DEFAULT_STEPS}, prior: {args.anchor}; {machine()}, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(["frame (trajectory)", "PSNR dB", "vs blurred", "yaw / pitch / roll (deg)", "mean rot."], rows))


if __name__ == "__main__":
    main()
