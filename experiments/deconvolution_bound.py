"""How much deconvolution at the model's size could give, and what holds it back: the trajectory or the depth.

    python -m experiments.deconvolution_bound DATASET [--num 40] [--weight 0.3] [--iterations 8] [--subframes 2]
                                                  [--variants] [--checkpoint CKPT]

On the first ``--num`` test samples of a dataset built by ``wfb make-dataset`` (at the model's size), the network's
deblurred frame is deconvolved (:func:`worldfromblur.reconstruct.deconvolve.deconvolve`, from that frame, at
``--weight``) with the exposure made of

* the refined trajectory and the network's depth (what ``wfb reconstruct --deconvolve`` does; ``wfb evaluate
  --refine 15 --deconvolve`` scores it on a whole split);
* the true trajectory and the network's depth (a perfect motion estimate);
* the true trajectory and the true depth (where it is measured; the network's elsewhere): the ceiling;

and, to say which part of the motion costs what: the true rotation with the networks' translation (refinement's
unknowns exact), the refined rotation with the true translation, and (``--variants``) the trajectory refined with
the translation freed too (``refine(..., translation=True)``) and refined from zero translation instead of the
networks'.

The true trajectory is taken in the time order closer to the refined one (a blur is the same either way). PSNR in
dB against the sharp frame, mean over the samples.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import machine
from experiments.common import (
    deconvolution_arguments,
    psnr_table,
    refined_samples,
    true_motion,
)
from worldfromblur.evaluation.metrics import psnr
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.deconvolve import DECONV_SUBFRAMES, deconvolve
from worldfromblur.reconstruct.refine import DEFAULT_STEPS, refine


def main() -> None:
    ap = deconvolution_arguments(__doc__)
    ap.add_argument("--subframes", type=int, default=DECONV_SUBFRAMES, help="instants per frame interval")
    ap.add_argument("--variants", action="store_true",
                    help="also refine with the translation freed, and from zero translation (two more refinements a "
                         "sample)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    scores: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for s, o, r in refined_samples(model, args.data, args.num):
        B, K, sharp = s["blurred"], s["K"], s["sharp"]
        u, v, true_depth = true_motion(s, r.u, o["depth"])
        frames = {
            "blurred input": B,
            "network": o["deblurred"],
            "deconvolved: refined trajectory, network's depth": (r.u, r.v, o["depth"]),
            "deconvolved: true trajectory, network's depth": (u, v, o["depth"]),
            "deconvolved: true trajectory and depth": (u, v, true_depth),
            "deconvolved: true rotation, networks' translation, network's depth": (u, r.v, o["depth"]),
            "deconvolved: refined rotation, true translation, network's depth": (r.u, v, o["depth"]),
        }
        if args.variants:
            for name, v0, free in (("with the translation freed", o["v"], True),
                                   ("from zero translation", torch.zeros_like(o["v"]), False)):
                t = refine(B, o["deblurred"], o["motion_depth"], o["u"], v0, K, DEFAULT_STEPS,
                           averaging=model.cfg.averaging, translation=free)
                frames[f"deconvolved: refined {name}, network's depth"] = (t.u, t.v, o["depth"])
        for name, x in frames.items():
            if isinstance(x, tuple):
                x = deconvolve(B, o["deblurred"], x[2], x[0], x[1], K, weight=args.weight,
                               iterations=args.iterations, subframes=args.subframes, robust=args.robust, tile=0)
            scores.setdefault(name, []).append(psnr(x, sharp))
    n = len(scores["network"])
    print(f"{n} test samples of {args.data}, lambda {args.weight:g}, {args.iterations} iterations, "
          f"{args.subframes} instants per interval, robust {args.robust:g}; {machine()}, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(psnr_table(scores))


if __name__ == "__main__":
    main()
