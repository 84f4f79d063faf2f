"""Which sharp frame the depth written should read, on blur made at several times the model's size.

    python -m experiments.reference_depth DATASET [--num 60] [--checkpoint CKPT]

``DATASET`` is built by ``wfb make-dataset`` at a size of about three times the model's (480 x 360 for the shipped
160 x 120 model), so that ``wfb reconstruct`` makes refinement's reference frame at a larger scale, as it does for
a photo. Each test sample goes through :class:`~worldfromblur.reconstruct.Reconstructor` with its true K and the
outputs kept at the working size (``max_pixels`` = the working size's pixels): the depth it writes, read from the
reference frame where that was made larger (``depth_source``), beside the depth the networks return from their own
working-size frame (what it wrote before, and still writes with refinement off) and the depth of the true sharp
frame brought to the working size, the bound a perfect deblurrer would reach. Depth is scored against the ground
truth sampled at the working size (nearest pixel centres) by ``wfb evaluate``'s metrics; the two frames' PSNR
against the sharp frame at that size says how much sharper the reference is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import machine, table
from experiments.refine_inputs import spread_samples
from worldfromblur.evaluation.metrics import depth_metrics, image_metrics
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor
from worldfromblur.reconstruct.fullres import resize
from worldfromblur.reconstruct.photo import Photo
from worldfromblur.reconstruct.pipeline import working_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset at about 3 times the model's size")
    ap.add_argument("--num", type=int, default=60, help="test samples, spread evenly over the split (default 60)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    count, samples = spread_samples(args.data, args.num)
    rows: dict[str, list] = {"networks' frame": [], "reference frame": [], "true sharp frame (bound)": []}
    psnrs: dict[str, list] = {"networks' frame": [], "reference frame": []}
    larger = 0
    for b in samples:
        H, W = b["blurred"].shape[-2:]
        photo = Photo(path=Path("sample.png"), rgb=b["blurred"][0].permute(1, 2, 0).numpy().astype(np.float32),
                      mode="RGB")
        K = b["K"][0].double().numpy()
        given = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        size = working_size(W, H, model.cfg.input_size)
        engine = Reconstructor(model, "cpu", max_pixels=size[0] * size[1])
        rec = engine(photo, given)
        if rec.work.size != size:
            raise SystemExit(f"{args.data}: the outputs came back at {rec.work.size}, not the working size {size}")
        gt = F.interpolate(b["depth"], size=size[::-1], mode="nearest-exact")
        sharp = resize(b["sharp"], size).clamp(0, 1)
        net = engine.networks(rec.work.blurred, rec.work.K)  # the networks' own frame and its depth
        with torch.no_grad():
            bound = model.output_depth(sharp, rec.work.K)
        larger += int(rec.depth_source == "reference")
        for name, depth in (("networks' frame", net["depth"]), ("reference frame", rec.work.depth),
                            ("true sharp frame (bound)", bound)):
            rows[name].append(depth_metrics(depth, gt, gt > 0))
        psnrs["networks' frame"].append(image_metrics(net["deblurred"], sharp)["psnr"])
        psnrs["reference frame"].append(image_metrics(rec.work.deblurred, sharp)["psnr"])
    print(f"{args.data}: {count} test samples at {W}x{H}, working size {size[0]}x{size[1]}; the reference frame was "
          f"made at a larger scale for {larger}. {machine()}\n")
    out = []
    for name, r in rows.items():
        m = {k: float(np.mean([x[k] for x in r])) for k in ("abs_rel", "rmse", "a1")}
        p = f"{np.mean(psnrs[name]):.2f}" if name in psnrs else ""
        out.append([name, f"{m['abs_rel']:.3f}", f"{m['rmse']:.3f}", f"{m['a1']:.3f}", p])
    print(table(["depth read from", "Abs Rel", "RMSE (m)", "δ < 1.25", "frame PSNR at the working size (dB)"], out))


if __name__ == "__main__":
    main()
