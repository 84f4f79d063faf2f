"""Does the depth module know how deep a scene is, or only its training rooms' depth?

    python -m experiments.depth_scale DATASET [DATASET ...] [--num 100] [--checkpoint CKPT ...]

For ``--num`` test samples spread over each dataset (built by ``wfb make-dataset`` at the model's size), the median
of the depth the model returns against the median of the true depth, per image, in logarithms:

* **scale**: the geometric mean of median(predicted) / median(true): below 1, the scenes are read too near;
* **corr**: the correlation of the two logarithms over the images: whether a deeper scene gets a deeper answer;
* **slope**: of log(predicted) on log(true): 1 follows the scenes' depth, 0 answers one depth whatever the scene.

A model that has learned the depth of scenes has a slope near 1 on every dataset, and a scale near 1 on each; one
that has learned its training rooms' depth answers near that depth everywhere (slope well below 1): on deeper
rooms its scale is below 1 and on shallower ones above, and a fine-tune that moves its one depth trades one room
for another. The last row pools all the datasets' images, so its slope is over the widest range of depths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from experiments.refine_inputs import spread_samples
from worldfromblur.models.io import load_model, shipped_model


def log_medians(model, data: Path, num: int) -> tuple[np.ndarray, np.ndarray]:
    """log median(predicted depth) and log median(true depth) over each image's valid pixels, for ``num`` test
    samples of ``data`` (images without valid depth are left out)."""
    _, samples = spread_samples(data, num)
    pred, true = [], []
    for b in samples:
        with torch.no_grad():
            depth = model.predict(b["blurred"], b["K"])["depth"]
        valid = b["valid_depth"] > 0
        if valid.any():
            pred.append(float(depth[valid].median().log()))
            true.append(float(b["depth"][valid].median().log()))
    return np.array(pred), np.array(true)


def scale_row(pred: np.ndarray, true: np.ndarray) -> list:
    """[images, true medians' range, scale, corr, slope] of log medians (see the module docstring)."""
    if len(pred) < 2:
        raise SystemExit("fewer than two images with valid depth: nothing to correlate")
    corr = float(np.corrcoef(pred, true)[0, 1]) if np.std(true) > 0 and np.std(pred) > 0 else float("nan")
    slope = float(np.polyfit(true, pred, 1)[0]) if np.std(true) > 0 else float("nan")
    return [len(pred), f"{np.exp(true.min()):.2f}-{np.exp(true.max()):.2f} m", f"{np.exp(np.mean(pred - true)):.2f}",
            f"{corr:.2f}", f"{slope:.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="+", help="datasets built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=100, help="test samples per dataset, spread evenly (default 100)")
    ap.add_argument("--checkpoint", action="append", default=None,
                    help="model (repeatable; default: the shipped one)")
    args = ap.parse_args()
    print(machine(), "\n")
    for ckpt in args.checkpoint or [str(shipped_model())]:
        model = load_model(ckpt)[0].eval()
        rows, pooled = [], ([], [])
        for data in args.data:
            pred, true = log_medians(model, data, args.num)
            rows.append([str(data), *scale_row(pred, true)])
            pooled[0].append(pred)
            pooled[1].append(true)
        if len(args.data) > 1:
            rows.append(["all", *scale_row(np.concatenate(pooled[0]), np.concatenate(pooled[1]))])
        print(f"{ckpt}\n")
        print(table(["dataset", "images", "true median depths", "scale", "corr", "slope"], rows), "\n")


if __name__ == "__main__":
    main()
