"""Depth at full resolution from the working size: bilinear, guided-filter and joint bilateral upsampling compared.

    python -m experiments.fullres_depth DATASET [--checkpoint DIR] [--split test]

DATASET is a folder made by ``wfb make-dataset`` at a size larger than the model's (for example 7-Scenes at
640x480, docs/reconstruct.md). For each sample the model deblurs the blurred image at full size (as
``wfb reconstruct`` does) and predicts depth at its working size; each method brings that depth to full size,
and it is compared with the ground truth there: Abs Rel and RMSE (m) as in the evaluation tables, and the mean
absolute log-depth error on the pixels next to a ground-truth depth edge (|d log depth| > 0.05 between neighbours),
where upsampling methods differ.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.evaluation.metrics import depth_metrics
from worldfromblur.geometry import scale_intrinsics
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.fullres import deblur_full, resize, upsample_depth
from worldfromblur.reconstruct.pipeline import working_size


def edge_error(pred: np.ndarray, gt: np.ndarray) -> float:
    g, p = np.log(np.maximum(gt, 1e-3)), np.log(pred)
    step = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1]
    edge = (step > 0.05) & (gt[:-1, :-1] > 0) & (gt[1:, :-1] > 0) & (gt[:-1, 1:] > 0)
    return float(np.abs(p[:-1, :-1] - g[:-1, :-1])[edge].mean()) if edge.any() else float("nan")


@torch.no_grad()
def upsampled(model, blurred: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
    from kornia.filters import guided_blur

    H, W = blurred.shape[-2:]
    work = working_size(W, H, model.cfg.input_size)
    K_work = scale_intrinsics(K, work[0] / W, work[1] / H)
    depth = model.metric_depth(model.deblur(resize(blurred, work).clamp(0, 1)), K_work)
    deblurred, _ = deblur_full(model.deblur, blurred, work[0] * work[1])
    bilinear = F.interpolate(depth, size=(H, W), mode="bilinear", align_corners=False)
    f = round(W / work[0])
    guided = guided_blur(deblurred.mean(1, keepdim=True), bilinear.log(), 8 * f + 1, 1e-2, subsample=f).exp()
    return {"bilinear": bilinear, "guided filter (r = 4 working px, eps 1e-2, log depth)": guided,
            "joint bilateral (wfb reconstruct)": upsample_depth(depth, deblurred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one)")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    data = BlurDataset(args.dataset, args.split)
    scores: dict[str, list[tuple[float, float, float]]] = {}
    for i in range(len(data)):
        s = data[i]
        gt = s["depth"][0].double().numpy()
        for name, d in upsampled(model, s["blurred"][None], s["K"][None]).items():
            d = d[0, 0].double().numpy()
            m = depth_metrics(d, gt, gt > 0)
            scores.setdefault(name, []).append((m["abs_rel"], m["rmse"], edge_error(d, gt)))
    H, W = gt.shape
    rows = [[name, *(f"{statistics.mean(x[k] for x in v):.4f}" for k in range(3))] for name, v in scores.items()]
    print(f"{len(data)} samples of {W}x{H} from {args.dataset} ({args.split}); {machine()}\n")
    print(table(["upsampling", "Abs Rel", "RMSE m", "log error at depth edges"], rows))


if __name__ == "__main__":
    main()
