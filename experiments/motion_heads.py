"""Where the motion heads' errors come from: their pixel paths, and the solve from paths and depth to poses.

    python -m experiments.motion_heads --data data/7scenes-test160 --lstm runs/lstm --paths runs/paths

On a built dataset (test split), three tables. Paths: the mean end-point error (pixels, Euclidean, over the 2n instants
and the pixels with depth, each sample in its closer time order) of the ground-truth paths against no motion, against
the paths the LSTM head's poses give through the true depth, and against the path head's own prediction. Poses: the
errors up to reversal (as ``wfb evaluate``) of the path head's poses solved from its paths with the predicted depth
(what the model returns: with the translation prior), the same without the prior, with the true depth, and of the
true paths solved with the predicted depth and no prior (what the depth alone costs), beside the LSTM head and no
motion. Last, the verdict, paired over the samples: each axis's error over zero motion's mean error, averaged over
the six axes (and over translation and rotation apart), the path head's minus the LSTM head's, with its standard
error. ``module:path`` specs (as for ``wfb evaluate``) join both heads to the same deblurring and depth modules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.evaluation.metrics import MOTION_KEYS, motion_errors
from worldfromblur.geometry import forward_flow, pixel_grid, pose_from_uv
from worldfromblur.models.io import load_model


def path_epe(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean end-point error of (B, M, 2, H, W) displacements over ``mask`` (B, 1, H, W), the closer time order."""
    def err(g: torch.Tensor) -> torch.Tensor:
        e = (pred - g).norm(dim=2).mean(1, keepdim=True)  # (B, 1, H, W)
        return (e * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)

    return torch.minimum(err(gt), err(gt.flip(1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a built dataset (wfb make-dataset)")
    ap.add_argument("--lstm", required=True, help="a checkpoint with the LSTM motion head")
    ap.add_argument("--paths", required=True, help="a checkpoint with the per-pixel path head")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N samples (0: all)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    ds = BlurDataset(args.data, split="test")
    if args.limit:
        ds = torch.utils.data.Subset(ds, range(min(args.limit, len(ds))))
    lstm, _ = load_model(args.lstm)
    paths, _ = load_model(args.paths)
    epe: dict[str, list] = {"no motion": [], "LSTM poses, true depth": [], "path head": []}
    poses: dict[str, list] = {k: [] for k in ("no motion", "LSTM head", "path head (its depth, prior)",
                                               "path head, no prior", "path head, true depth, prior",
                                               "true paths, predicted depth, no prior")}  # per sample, per axis
    for b in tqdm(DataLoader(ds, batch_size=4), desc="samples", unit="batch"):
        K, depth_gt, gt_poses = b["K"], b["depth"], b["poses"]
        mask = b["valid_depth"].float()
        gt_flow, _ = forward_flow(depth_gt.clamp_min(1e-3), gt_poses, K)
        out_l = lstm.predict(b["blurred"], K=K)
        lstm_poses = pose_from_uv(out_l["u"], out_l["v"])
        out_p = paths.predict(b["blurred"], K=K)
        if "paths" in out_l or "paths" not in out_p:
            raise SystemExit("--lstm needs a checkpoint with the LSTM head and --paths one with the path head")
        depth_p = out_p["motion_depth"].float()
        grid = pixel_grid(*depth_p.shape[-2:], depth_p)[0].permute(2, 0, 1)
        conf = paths.motion.confidence(out_p["log_scale"])
        epe["no motion"].append(path_epe(torch.zeros_like(gt_flow), gt_flow, mask))
        epe["LSTM poses, true depth"].append(path_epe(forward_flow(depth_gt.clamp_min(1e-3), lstm_poses, K)[0], gt_flow, mask))
        epe["path head"].append(path_epe(out_p["paths"] - grid, gt_flow, mask))
        solve = paths.motion.solve
        found = {"no motion": torch.eye(4).expand_as(gt_poses), "LSTM head": lstm_poses,
                 "path head (its depth, prior)": pose_from_uv(out_p["u"], out_p["v"]),
                 "path head, no prior": solve(out_p["paths"], depth_p, K, conf, translation_prior=0).poses,
                 "path head, true depth, prior": solve(out_p["paths"], torch.where(depth_gt > 0, depth_gt, depth_p), K,
                                                       conf).poses,
                 "true paths, predicted depth, no prior": solve(gt_flow + grid, depth_p, K, mask,
                                                                translation_prior=0).poses}
        for k, p in found.items():
            poses[k] += [[motion_errors(p[i:i + 1], gt_poses[i:i + 1], reversal="min")[m] for m in MOTION_KEYS]
                         for i in range(len(gt_poses))]
    print(f"{args.data} ({len(ds)} samples); {machine()}\n")
    print(table(["paths", "end-point error (px)"], [[k, f"{torch.cat(v).mean():.3f}"] for k, v in epe.items()]))
    print()
    poses = {k: np.array(v) for k, v in poses.items()}  # (samples, 6)
    rows = [[k] + [f"{x:.3f}" for x in v.mean(0)] for k, v in poses.items()]
    print(table(["poses, up to reversal"] + [f"{m} ({'cm' if m.startswith('t') else 'deg'})" for m in MOTION_KEYS], rows))
    print()
    zero = poses["no motion"].mean(0)
    lstm_n, paths_n = poses["LSTM head"] / zero, poses["path head (its depth, prior)"] / zero
    rows = []
    for name, axes in (("all six", slice(0, 6)), ("translation", slice(0, 3)), ("rotation", slice(3, 6))):
        d = paths_n[:, axes].mean(1) - lstm_n[:, axes].mean(1)
        rows.append([name, f"{lstm_n[:, axes].mean():.3f}", f"{paths_n[:, axes].mean():.3f}",
                     f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}"])
    print(table(["error / zero motion's", "LSTM head", "path head", "path − LSTM (paired, ± SE)"], rows))


if __name__ == "__main__":
    main()
