"""How much the path head's rotation depends on the depth map its poses are solved with, and on the solve's prior.

    python -m experiments.solve_depth --data .evaldata/icl-living160 --models release4=src/worldfromblur/weights/default \
        C=runs/cpu-depth-C --priors 0.1 0.3 1.0

The per-pixel path head (``motion: paths``) predicts pixel paths and solves the poses from them, the depth map and K
(:mod:`worldfromblur.pose_solve`). On a built dataset (test split) this prints, for each model and each translation
prior weight, the errors up to reversal (as ``wfb evaluate``'s Table 1b) of the poses solved with the model's own
depth and with the dataset's true depth (holes filled as the blur stream fills them), so that a depth module's effect
on the rotation is told apart from the paths' own error: with the true depth every model with the same motion module
gives the same poses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks.common import machine, table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.data.exposure import fill_holes
from worldfromblur.evaluation.metrics import motion_errors
from worldfromblur.geometry import pose_from_uv
from worldfromblur.models.io import load_model
from worldfromblur.pose_solve import TRANSLATION_PRIOR

AXES = ("yaw", "pitch", "roll", "tx", "ty", "tz")


def solved_errors(model, loader, priors: list[float]) -> dict[tuple[float, bool], dict[str, float]]:
    """Mean errors up to reversal over ``loader`` of the model's poses solved with each prior and its own depth
    (key ``(prior, False)``) or the dataset's depth (``(prior, True)``); the networks run once per batch."""
    sums: dict[tuple[float, bool], dict[str, float]] = {}
    n = 0
    for b in loader:
        with torch.no_grad():
            deblurred = model.deblur(b["blurred"])
            out = model.motion(b["blurred"], deblurred)
            depths = {False: model.metric_depth(deblurred, b["K"]), True: fill_holes(b["depth"][:, 0]).unsqueeze(1)}
            for prior in priors:
                for true_depth, depth in depths.items():
                    sol = model.motion.estimate(out, depth, b["K"], translation_prior=prior)
                    err = motion_errors(pose_from_uv(sol.u, sol.v), b["poses"], reversal="min")
                    acc = sums.setdefault((prior, true_depth), dict.fromkeys(AXES, 0.0))
                    for a in AXES:
                        acc[a] += err[a] * b["blurred"].shape[0]
        n += b["blurred"].shape[0]
    return {key: {a: v / n for a, v in acc.items()} for key, acc in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a built dataset (wfb make-dataset)")
    ap.add_argument("--models", nargs="+", required=True, help="LABEL=CHECKPOINT, each with the path head")
    ap.add_argument("--priors", type=float, nargs="+", default=[TRANSLATION_PRIOR], help="translation prior weights")
    args = ap.parse_args()
    loader = DataLoader(BlurDataset(args.data, split="test"), batch_size=8)
    rows = []
    for spec in args.models:
        label, _, path = spec.rpartition("=")
        model, _ = load_model(path)
        if model.cfg.motion != "paths":
            raise SystemExit(f"{spec}: has the {model.cfg.motion} motion head, not the path head")
        model.eval()
        errors = solved_errors(model, tqdm(loader, desc=label or path), args.priors)
        for prior in args.priors:
            for true_depth in (False, True):
                e = errors[(prior, true_depth)]
                rows.append([label or path, f"{prior:g}", "true" if true_depth else "own",
                             *(f"{e[a]:.3f}" for a in AXES), f"{(e['yaw'] + e['pitch'] + e['roll']) / 3:.3f}"])
    print(f"{args.data} ({len(loader.dataset)} samples), {machine()}")
    print(table(["model", "prior", "depth", "yaw °", "pitch °", "roll °", "tx cm", "ty cm", "tz cm", "rotation mean °"],
                rows))


if __name__ == "__main__":
    main()
