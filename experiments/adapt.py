"""Adapting the deblurring network to one photo through its own re-blur, against deconvolving its frame.

    python -m experiments.adapt DATASET [--num 40] [--steps 60] [--lr 1e-4] [--true] [--split] [--checkpoint CKPT]

``--deconvolve`` keeps the sharp frame near the network's with a quadratic prior (docs/reconstruct.md). Here the
prior is the network itself: a copy of the deblurring module is trained on the one photo for ``--steps`` Adam
steps, all its weights, so that the re-blur of its output (the exposure of :func:`worldfromblur.geometry
.exposure_sampler` at 2 instants per frame interval, in linear light, with the trajectory and the network's depth)
matches the photo (mean absolute error); the adapted module's output is the frame. This is the paper's
self-supervised cycle run at test time on one image, with the motion fixed.

On the first ``--num`` test samples of a dataset built by ``wfb make-dataset`` (at the model's size), PSNR in dB
against the sharp frame of: the blurred input, the network's frame, the frame deconvolved with the refined
trajectory (``wfb reconstruct --deconvolve``) and the frame of the module adapted with it; with ``--true``, the same
two with the true trajectory (in the time order closer to the refined one) and the true depth where it is measured:
what each prior gives once the motion is right; with ``--split``, the module adapted with the true rotation and the
networks' translation, and with the true trajectory and the network's depth.
"""

from __future__ import annotations

import copy
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
from worldfromblur.geometry import exposure_sampler, pose_from_uv
from worldfromblur.imaging import srgb_to_linear
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.deconvolve import deconvolve


def adapted_frame(deblur: torch.nn.Module, blurred: torch.Tensor, depth: torch.Tensor, u: torch.Tensor,
                  v: torch.Tensor, K: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """The (1, 3, H, W) frame of a copy of ``deblur`` trained for ``steps`` Adam steps (rate ``lr``) on the photo
    ``blurred`` alone, so that its output re-blurred with the trajectory (u, v) and ``depth`` matches the photo in
    linear light (mean absolute error). ``deblur`` itself is left as it was."""
    net = copy.deepcopy(deblur).eval()  # eval: normalisation statistics stay the trained ones
    for p in net.parameters():
        p.requires_grad_(True)
    exposure = exposure_sampler(depth, pose_from_uv(u, v), K, 2)
    target = srgb_to_linear(blurred)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (exposure(srgb_to_linear(net(blurred).clamp(0, 1))) - target).abs().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(blurred).clamp(0, 1)


def main() -> None:
    ap = deconvolution_arguments(__doc__)
    ap.add_argument("--steps", type=int, default=60, help="Adam steps of the adaptation (default 60)")
    ap.add_argument("--lr", type=float, default=1e-4, help="its learning rate (default 1e-4)")
    ap.add_argument("--true", action="store_true", help="also deconvolve and adapt with the true trajectory and depth")
    ap.add_argument("--split", action="store_true",
                    help="also adapt with the true rotation and the networks' translation, and with the true "
                         "trajectory and the network's depth: which part of the motion the adaptation waits for")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    scores: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for s, o, r in refined_samples(model, args.data, args.num):
        B, K, sharp, D = s["blurred"], s["K"], s["sharp"], o["depth"]
        frames = {"blurred input": B, "network": o["deblurred"],
                  "deconvolved: refined trajectory": deconvolve(
                      B, o["deblurred"], D, r.u, r.v, K, weight=args.weight, iterations=args.iterations,
                      robust=args.robust, tile=0),
                  "adapted: refined trajectory": adapted_frame(model.deblur, B, D, r.u, r.v, K, args.steps, args.lr)}
        u, v, true_depth = true_motion(s, r.u, D)
        if args.split:
            frames["adapted: true rotation, networks' translation"] = adapted_frame(model.deblur, B, D, u, r.v, K,
                                                                                    args.steps, args.lr)
            frames["adapted: true trajectory, network's depth"] = adapted_frame(model.deblur, B, D, u, v, K,
                                                                                args.steps, args.lr)
        if args.true:
            frames["deconvolved: true trajectory and depth"] = deconvolve(
                B, o["deblurred"], true_depth, u, v, K, weight=args.weight, iterations=args.iterations,
                robust=args.robust, tile=0)
            frames["adapted: true trajectory and depth"] = adapted_frame(model.deblur, B, true_depth, u, v, K,
                                                                         args.steps, args.lr)
        for name, x in frames.items():
            scores.setdefault(name, []).append(psnr(x, sharp))
    n = len(scores["network"])
    print(f"{n} test samples of {args.data}; adaptation: {args.steps} Adam steps at {args.lr:g}; deconvolution: lambda "
          f"{args.weight:g}, {args.iterations} iterations, robust {args.robust:g}; {machine()}, "
          f"{(time.perf_counter() - t0) / max(n, 1):.1f} s a sample\n")
    print(psnr_table(scores))


if __name__ == "__main__":
    main()
