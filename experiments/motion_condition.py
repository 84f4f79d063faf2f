"""How well a photo's blur determines the camera's motion, on real photographs: the numbers behind the
``motion_degenerate`` warning of ``wfb reconstruct``.

    python -m experiments.motion_condition LABEL=FOLDER[:FX,FY,CX,CY] ... [--checkpoint DIR] [--limit 40]

For every photo of each folder (intrinsics from the given fx, fy, cx, cy at the photo's size, else as
``wfb reconstruct`` takes them: EXIF or its default), the shipped path-head model (or ``--checkpoint``) runs at the
working size and its pose solve (:func:`worldfromblur.pose_solve.solve_poses`, with the translation prior the model
uses) reports two conditions per instant: the whole motion's (rotation and translation together, no prior), and the
rotation's with the translation marginalised under the prior. The table gives their 1st, 10th and 50th percentiles
over all instants of a folder and the share of instants flagged ``degenerate`` (rotation condition below
:data:`~worldfromblur.pose_solve.MIN_ROTATION_CONDITION`). Beside the photos, inputs that
determine little: a uniform grey image and a plane facing the camera seen through a narrow lens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import table
from worldfromblur.data.synthetic.textures import PHOTO_SUFFIXES
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.pose_solve import MIN_ROTATION_CONDITION
from worldfromblur.reconstruct.photo import intrinsics_for, load_photo
from worldfromblur.reconstruct.pipeline import resize_photo, working_size


@torch.no_grad()
def conditions(model, x: torch.Tensor, K: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(whole-motion conditions, rotation conditions), one per instant, of the model on one working-size image."""
    out = model.predict(x, K=K)
    sol = model.motion.solve(out["paths"], out["motion_depth"], K, model.motion.confidence(out["log_scale"]))
    return sol.condition[0].numpy(), sol.rotation_condition[0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="LABEL=FOLDER[:FX,FY,CX,CY]")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=40, help="photos per folder (evenly spaced; default 40)")
    args = ap.parse_args()
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    size = tuple(model.cfg.input_size)
    results: dict[str, tuple[list, list]] = {}
    for spec in args.folders:
        label, _, rest = spec.partition("=")
        folder, _, intr = rest.partition(":")
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and "_gt" not in p.stem)
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.limit, len(paths))).astype(int)]
        for path in paths:
            photo = load_photo(path)
            K_full, _ = intrinsics_for(photo, [float(v) for v in intr.split(",")] if intr else None)
            x, K = resize_photo(photo, K_full, working_size(*photo.size, size))
            c, r = conditions(model, x, K)
            results.setdefault(label, ([], []))[0].extend(c)
            results[label][1].extend(r)
    W, H = size
    grey = torch.full((1, 3, H, W), 0.5)
    K_wide = torch.tensor([[[0.8 * W, 0, W / 2], [0, 0.8 * W, H / 2], [0, 0, 1]]])
    results["uniform grey"] = tuple(map(list, conditions(model, grey, K_wide)))
    narrow = K_wide.clone()
    narrow[0, 0, 0] = narrow[0, 1, 1] = 8 * W  # a 7-degree lens: every pixel's motion alike
    rng = np.random.default_rng(0)
    texture = torch.from_numpy(rng.random((1, 3, H // 8, W // 8))).float()
    plane = torch.nn.functional.interpolate(texture, size=(H, W), mode="bilinear", align_corners=False)
    results["textured plane, 7-degree lens"] = tuple(map(list, conditions(model, plane, narrow)))
    rows = []
    for label, (c, r) in results.items():
        c, r = np.array(c), np.array(r)
        rows.append([label, len(c)] + [f"{np.percentile(c, q):.1e}" for q in (1, 10, 50)]
                    + [f"{np.percentile(r, q):.1e}" for q in (1, 10, 50)]
                    + [f"{100 * np.mean(r < MIN_ROTATION_CONDITION):.0f} %"])
    print(table(["photos", "instants", "whole p1", "p10", "p50", "rotation p1", "p10", "p50",
                 f"flagged (< {MIN_ROTATION_CONDITION:g})"], rows))


if __name__ == "__main__":
    main()
