"""Camera motion of real video against the synthetic engine's motion model and the blur stream's.

    python -m experiments.motion_stats --sequence 7scenes:tsdf-fusion-python/data \
        --dataset real=data/real7-test160 --dataset engine=data/synth160 --stream-pool synthetic:64

For each source, the spread (5th, 50th and 95th percentiles) of three per-exposure statistics over 2n + 1 = 7
instants at 30 fps: the mean rotation between consecutive instants (degrees), the mean translation (cm), and the
blur length at 160 x 120 (the median and the longest pixel path over the exposure, pixels; NYU-like intrinsics,
fx = 0.81 W). Sources: raw pose sequences (``--sequence KIND:DIR``, every window of a 7-Scenes or TUM sequence;
rotation and translation only, no blur), built datasets (``--dataset LABEL=DIR``, from their manifests), the
engine's motion model drawn directly (``draw_motion``, always), and the blur stream (``--stream-pool``, motion
rescaled to its drawn blur lengths).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import table
from worldfromblur.data.pool import build_pool
from worldfromblur.data.rgbd.build import RGBDOptions, open_sequence
from worldfromblur.data.stream import BlurStream, StreamOptions
from worldfromblur.data.synthetic.engine import SyntheticOptions, draw_motion
from worldfromblur.geometry import uv_from_pose
from worldfromblur.viz import pixel_paths

KEYS = ("rotation_deg_per_frame", "translation_cm_per_frame", "roll_share", "blur_px_median", "blur_px_max")


def roll_share(u: np.ndarray) -> float:
    """How much of an exposure's rotation (first to last instant of (2n + 1, 3) rotation vectors) is about the
    optical axis: |roll| / |rotation|, 0 to 1 (a random direction: 0.5 on average)."""
    d = u[-1] - u[0]
    return float(abs(d[2]) / max(np.linalg.norm(d), 1e-12))


def per_frame(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Mean rotation (deg) and translation (cm) between consecutive instants of (2n + 1, 3) pose parameters."""
    return (float(np.rad2deg(np.linalg.norm(np.diff(u, axis=0), axis=1)).mean()),
            float(100 * np.linalg.norm(np.diff(v, axis=0), axis=1).mean()))


def spread(values) -> str:
    if len(values) == 0:
        return "-"
    p = np.percentile(values, [5, 50, 95])
    return f"{p[0]:.2f} / {p[1]:.2f} / {p[2]:.2f}"


def sequence_rows(spec: str, n: int = 3) -> dict:
    kind, root = spec.split(":", 1)
    seq = open_sequence(root, RGBDOptions(kind=kind))
    poses = [f.pose for f in seq.frames]
    rot, trans, roll = [], [], []
    for c in range(n, len(poses) - n):
        window = poses[c - n: c + n + 1]
        if any(T is None for T in window):
            continue
        rel = torch.from_numpy(np.stack([np.linalg.inv(T) @ window[n] for T in window]))
        u, v = (x.numpy() for x in uv_from_pose(rel))
        r, t = per_frame(u, v)
        rot.append(r)
        trans.append(t)
        roll.append(roll_share(u))
    return {"rotation_deg_per_frame": rot, "translation_cm_per_frame": trans, "roll_share": roll}


def dataset_rows(root: str) -> dict:
    rows = {k: [] for k in KEYS}
    for meta in sorted(Path(root, "samples").glob("*/meta.json")):
        stats = json.loads(meta.read_text()).get("stats", {})
        for k in KEYS:
            if k in stats:
                rows[k].append(stats[k])
    return rows


def engine_rows(samples: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    opts = SyntheticOptions()
    rows = {"rotation_deg_per_frame": [], "translation_cm_per_frame": [], "roll_share": []}
    for _ in range(samples):
        u, v, _ = draw_motion(rng, opts)
        r, t = per_frame(u, v)
        rows["rotation_deg_per_frame"].append(r)
        rows["translation_cm_per_frame"].append(t)
        rows["roll_share"].append(roll_share(u))
    return rows


def stream_rows(pool_spec: str, samples: int) -> dict:
    pool, _ = build_pool([pool_spec], progress=False)
    stream = BlurStream(pool, StreamOptions(size=[160, 120], max_subframes=2), seed=0)
    rows = {k: [] for k in KEYS}
    for step in range(samples // 8):
        b = stream.batch(step, 8)
        T = torch.cat([b["poses"][:, :3], torch.eye(4).expand(8, 1, 4, 4), b["poses"][:, 3:]], dim=1).double()
        u, v = (x.numpy() for x in uv_from_pose(T))
        for i in range(8):
            r, t = per_frame(u[i], v[i])
            rows["rotation_deg_per_frame"].append(r)
            rows["translation_cm_per_frame"].append(t)
            rows["roll_share"].append(roll_share(u[i]))
            depth = np.where(b["depth"][i, 0].numpy() > 0, b["depth"][i, 0].numpy(), np.nan)
            paths = pixel_paths(np.nan_to_num(depth, nan=float(np.nanmedian(depth))), b["poses"][i].double().numpy(),
                                b["K"][i].double().numpy(), step=8)
            length = np.linalg.norm(np.diff(paths, axis=0), axis=-1).sum(0)
            rows["blur_px_median"].append(float(np.median(length)))
            rows["blur_px_max"].append(float(length.max()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sequence", action="append", default=[], help="KIND:DIR of a pose sequence (7scenes, tum, icl)")
    ap.add_argument("--dataset", action="append", default=[], help="LABEL=DIR of a built dataset")
    ap.add_argument("--stream-pool", default="synthetic:64", help="pool of the stream row ('' for none)")
    ap.add_argument("--samples", type=int, default=400, help="samples of the engine and stream rows")
    args = ap.parse_args()
    sources = {}
    for spec in args.sequence:
        sources[f"sequence {spec.split(':', 1)[0]} (every window)"] = sequence_rows(spec)
    for spec in args.dataset:
        label, root = spec.split("=", 1)
        sources[f"dataset {label}"] = dataset_rows(root)
    sources["engine's motion model (draw_motion)"] = engine_rows(args.samples)
    if args.stream_pool:
        sources["blur stream (rescaled to 40 U² px)"] = stream_rows(args.stream_pool, args.samples)
    rows = [[name, len(next(iter(r.values()))), *(spread(r.get(k, [])) for k in KEYS)] for name, r in sources.items()]
    print("p05 / median / p95 per exposure of 7 instants at 30 fps; blur lengths in pixels at the dataset's size")
    print(table(["source", "exposures", "rotation °/frame", "translation cm/frame", "roll share",
                 "blur px (median path)", "blur px (longest path)"], rows))


if __name__ == "__main__":
    main()
