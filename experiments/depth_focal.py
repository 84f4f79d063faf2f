"""How a model's depth answers the camera's focal length: the same views, zoomed in by cropping.

    python -m experiments.depth_focal --data DATA --models release5=src/worldfromblur/weights/default F=runs/focal-on \
        --zooms 1 1.25 1.5 2

A centre crop of 1/z of a blurred test image, enlarged back to the image's size, is what a camera of z times the
focal length sees from the same place: the scene and its depth are unchanged, the objects look z times larger. A
metric depth model that knows K should give the same depth at every zoom; one that reads distance from apparent size
alone gives z times less. For each model and zoom this prints the geometric mean over samples of the median ratio of
predicted to true depth (1: the right scale; its slope over the zooms is how much the model follows apparent size
instead of K), depth Abs Rel, and Abs Rel after each map is scaled to its truth's median (shape alone). The crop's
K is passed to the model (``model.depth_focal`` uses it; a model without it ignores it).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.geometry import scale_intrinsics
from worldfromblur.models.io import load_model


def zoomed(batch: dict, z: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The blurred images, true depth and K of a centre crop of 1/z of each image, enlarged back to its size."""
    _, _, H, W = batch["blurred"].shape
    h, w = round(H / z), round(W / z)
    top, left = (H - h) // 2, (W - w) // 2
    image = F.interpolate(batch["blurred"][:, :, top:top + h, left:left + w], size=(H, W), mode="bilinear",
                          align_corners=False, antialias=True).clamp(0, 1)
    depth = F.interpolate(batch["depth"][:, :, top:top + h, left:left + w], size=(H, W), mode="nearest")
    K = batch["K"].clone()
    K[:, 0, 2] -= left
    K[:, 1, 2] -= top
    return image, depth, scale_intrinsics(K, W / w, H / h)


@torch.no_grad()
def focal_response(model, loader, zooms: list[float]) -> dict[float, dict[str, float]]:
    """Per zoom: ``ratio`` (geometric mean of the per-image median predicted / true depth), ``abs_rel`` and
    ``abs_rel_scaled`` (after scaling each map to its truth's median), means over images."""
    sums = {z: {"log_ratio": 0.0, "abs_rel": 0.0, "abs_rel_scaled": 0.0} for z in zooms}
    n = 0
    for b in loader:
        for z in zooms:
            image, depth, K = zoomed(b, z)
            pred = model.metric_depth(model.deblur(image), K)
            for p, d in zip(pred, depth):
                m = d > 0
                p, d = p[m].double(), d[m].double()
                ratio = torch.median(p / d)
                s = sums[z]
                s["log_ratio"] += math.log(ratio)
                s["abs_rel"] += float(((p - d).abs() / d).mean())
                s["abs_rel_scaled"] += float(((p / ratio - d).abs() / d).mean())
        n += len(b["blurred"])
    return {z: {"ratio": math.exp(s["log_ratio"] / n), "abs_rel": s["abs_rel"] / n,
                "abs_rel_scaled": s["abs_rel_scaled"] / n} for z, s in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a built dataset (wfb make-dataset)")
    ap.add_argument("--models", nargs="+", required=True, help="LABEL=CHECKPOINT")
    ap.add_argument("--zooms", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0], help="zoom factors, each >= 1")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    if any(z < 1 for z in args.zooms):
        raise SystemExit("--zooms: a crop can only zoom in; give factors of 1 or more")
    loader = DataLoader(BlurDataset(args.data, split=args.split), batch_size=16)
    rows = []
    for spec in args.models:
        label, _, path = spec.rpartition("=")
        model = load_model(path)[0].eval()
        for z, r in focal_response(model, tqdm(loader, desc=label or path), args.zooms).items():
            rows.append([label or path, f"{z:g}", f"{float(loader.dataset[0]['K'][0, 0]) * z:.1f}", f"{r['ratio']:.3f}",
                         f"{r['abs_rel']:.3f}", f"{r['abs_rel_scaled']:.3f}"])
    print(f"{args.data} ({len(loader.dataset)} samples, {args.split}), {machine()}")
    print(table(["model", "zoom", "fx px", "predicted / true depth", "Abs Rel", "Abs Rel, median-scaled"], rows))


if __name__ == "__main__":
    main()
