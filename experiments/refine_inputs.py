"""Which of its inputs limits the refined rotation: refinement fed the truth in place of each network output.

    python -m experiments.refine_inputs DATASET [--num 60] [--checkpoint CKPT]

Test-time refinement (``wfb reconstruct``'s default: 15 Levenberg-Marquardt iterations on a smooth rotation)
fits the camera's rotation so that the re-blurred frame matches the photo. It holds three things fixed: the
deblurred frame it re-blurs, the depth that warps it and the translation. On ``--num`` test samples spread evenly
over a dataset built by ``wfb make-dataset`` (at the model's size), it starts from the networks' rotation each time
and is given

* the networks' frame, depth and translation (the pipeline);
* no translation; the true translation (in the time order of the networks' rotation); the true translation and depth;
* the true sharp frame; the true sharp frame, depth and translation;
* the networks' frame deconvolved with the refined trajectory (``--deconvolve``'s solve), refined again from the
  networks' rotation: what the pipeline's own sharper frame buys;
* with ``--target-blur``, the networks' inputs fitted to the photo blurred by a Gaussian.

Rotation errors up to reversal (``wfb evaluate``'s per-axis means, degrees) beside the networks' own and zero
motion's.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import gaussian_blur

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.evaluation.metrics import motion_errors
from worldfromblur.geometry import pose_from_uv, uv_from_pose
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.deconvolve import deconvolve
from worldfromblur.reconstruct.refine import DEFAULT_STEPS, RefineResult, refine

AXES = ("yaw", "pitch", "roll")


def spread_samples(data: Path, num: int):
    """(count, iterator of samples) of ``num`` test samples spread evenly over the test split of ``data``, each
    tensor with a batch dimension of 1."""
    ds = BlurDataset(data, split="test")
    picks = np.unique(np.linspace(0, len(ds) - 1, min(num, len(ds))).round().astype(int))
    return len(picks), ({k: x[None] for k, x in ds[int(i)].items() if torch.is_tensor(x)} for i in picks)


def _orient(truth: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``truth`` (1, 2n, 4, 4) in the time order whose rotations are nearer to ``u`` (1, 2n, 3): a blurred photo is
    the same either way, so a true translation must be given in the order of the rotation it joins."""
    reverse = truth.flip(1)
    near = [float((uv_from_pose(t)[0] - u).abs().sum()) for t in (truth, reverse)]
    return reverse if near[1] < near[0] else truth


def _rotations(model, s: dict, target_blur: list[float], roll_prior: float | None) -> dict[str, torch.Tensor]:
    """Every row's (1, 2n, 4, 4) poses for one test sample ``s`` (each tensor (1, ...)), and the truth (``"truth"``)
    in the time order of the networks' rotation."""
    B, K = s["blurred"], s["K"]
    with torch.no_grad():
        o = model(B, K)
    truth = _orient(s["poses"], o["u"])  # the networks may have answered in reverse time order
    _, v_true = uv_from_pose(truth)
    depth_true = torch.where(s["valid_depth"] > 0, s["depth"], o["motion_depth"])  # holes: the network's depth

    def refined(frame: torch.Tensor, depth: torch.Tensor, v: torch.Tensor, photo: torch.Tensor = B) -> RefineResult:
        return refine(photo, frame, depth, o["u"], v, K, DEFAULT_STEPS, averaging=model.cfg.averaging,
                      roll_prior=roll_prior)

    r = refined(o["deblurred"], o["motion_depth"], o["v"])
    rows = {"zero motion": (torch.zeros_like(o["u"]), torch.zeros_like(o["v"])), "networks": (o["u"], o["v"]),
            "refined: networks' frame, depth, translation (the pipeline)": (r.u, r.v)}
    for name, frame, depth, v in (("zero translation", o["deblurred"], o["motion_depth"], torch.zeros_like(o["v"])),
                                  ("true translation", o["deblurred"], o["motion_depth"], v_true),
                                  ("true translation and depth", o["deblurred"], depth_true, v_true),
                                  ("true sharp frame", s["sharp"], o["motion_depth"], o["v"]),
                                  ("true sharp frame, depth, translation", s["sharp"], depth_true, v_true)):
        r2 = refined(frame, depth, v)
        rows[f"refined: {name}"] = (r2.u, r2.v)
    frame = deconvolve(B, o["deblurred"], o["depth"], r.u, r.v, K, tile=0)
    r2 = refined(frame, o["depth"], o["v"])
    rows["refined: deconvolved frame, then refined again"] = (r2.u, r2.v)
    for sigma in target_blur:
        target = gaussian_blur(B, [2 * math.ceil(3 * sigma) + 1] * 2, [sigma, sigma])
        r2 = refined(o["deblurred"], o["depth"], o["v"], target)
        rows[f"refined to the photo blurred by a {sigma:g} px Gaussian"] = (r2.u, r2.v)
    return {name: pose_from_uv(u, v).detach() for name, (u, v) in rows.items()} | {"truth": truth}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=60, help="test samples, spread evenly over the split (default 60)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    ap.add_argument("--target-blur", type=float, nargs="*", default=[], metavar="SIGMA",
                    help="also fit to the photo blurred by a Gaussian of each SIGMA pixels (a uniform residual blur "
                         "of the frame would be matched by one)")
    ap.add_argument("--roll-prior", type=float, default=None, metavar="W",
                    help="the refinement's roll-prior weight (default: wfb reconstruct's; the tables of "
                         "docs/reconstruct.md were made with 0)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    count, samples = spread_samples(args.data, args.num)
    scores: dict[str, list[list[float]]] = {}
    t0 = time.perf_counter()
    for s in samples:
        poses = _rotations(model, s, args.target_blur, args.roll_prior)
        truth = poses.pop("truth")
        for name, P in poses.items():
            m = motion_errors(P, truth, reversal="min")
            scores.setdefault(name, []).append([m[k] for k in AXES])
    rows = [[name, *(f"{x:.3f}" for x in np.mean(v, axis=0))] for name, v in scores.items()]
    print(f"{count} test samples of {args.data}; {machine()}, {time.perf_counter() - t0:.0f} s\n")
    print(table(["rotation from", *(f"{a} (°)" for a in AXES)], rows))


if __name__ == "__main__":
    main()
