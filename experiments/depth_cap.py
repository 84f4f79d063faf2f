"""The largest depth the EfficientNet-Lite0 depth module can return, and what it costs on each dataset.

    python -m experiments.depth_cap DATASET [DATASET ...] [--num 60] [--checkpoint CKPT]

The module's last layer is a 3x3 convolution of ReLU features (all >= 0) followed by softplus. When every weight of
that convolution is negative, as in release 5's, its output can only fall below its bias: the depth can never
exceed softplus(bias) + min_depth, whatever the image (unless ``out_signed``, which reads the same block before
its ReLU, is non-zero: then there is no such bound, and the bound printed is only the ReLU branch's). This prints
that bound, the signs of the weights, and per
dataset (``--num`` test samples spread over the split, the depth the model returns): the share of pixels predicted
within 1 % of the bound, the share whose true depth lies beyond it, and Abs Rel where the truth is within the bound
and where it is beyond.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import machine, table
from experiments.refine_inputs import spread_samples
from worldfromblur.models.io import load_model, shipped_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="+", help="datasets built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=60, help="test samples per dataset, spread evenly (default 60)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    out = getattr(model.depth, "out", None)
    if out is None or not hasattr(model.depth, "min_depth"):
        raise SystemExit("this experiment reads the effnet_lite0 depth module's last layer; the model has another")
    w = out.weight.detach()
    bound = float(F.softplus(out.bias.detach()).max()) + model.depth.min_depth
    signs = f"{int((w > 0).sum())} positive, {int((w < 0).sum())} negative of {w.numel()}"
    signed = getattr(model.depth, "out_signed", None)
    lifted = signed is not None and bool(signed.weight.detach().abs().max() > 0)
    capped = ("none (out_signed reads the features before their ReLU)" if lifted
              else f"{bound:.3f} m" if (w <= 0).all() else "none (some weight > 0)")
    print(f"last layer: {signs}; depth bound {capped}. {machine()}\n")
    rows = []
    for data in args.data:
        count, samples = spread_samples(data, args.num)
        at, beyond, near_err, far_err = [], [], [], []
        for b in samples:
            with torch.no_grad():
                depth = model.predict(b["blurred"], b["K"])["depth"]
            gt, valid = b["depth"], b["depth"] > 0
            err = ((depth - gt).abs() / gt.clamp_min(1e-3))[valid]
            g = gt[valid]
            at.append(float((depth > 0.99 * bound).float().mean()))
            beyond.append(float((g > bound).float().mean()))
            if (g <= bound).any():
                near_err.append(float(err[g <= bound].mean()))
            if (g > bound).any():
                far_err.append(float(err[g > bound].mean()))
        far = f"{np.mean(far_err):.3f} ({len(far_err)} samples)" if far_err else "-"
        rows.append([f"{data} ({count})", f"{np.mean(at):.2f}", f"{np.mean(beyond):.2f}", f"{np.mean(near_err):.3f}",
                     far])
    print(table(["dataset (samples)", "pixels predicted at or above the bound", "true depth beyond it",
                 "Abs Rel, truth within", "Abs Rel, truth beyond"], rows))


if __name__ == "__main__":
    main()
