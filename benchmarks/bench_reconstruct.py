"""End-to-end time of wfb reconstruct per photo, split into loading, networks, refinement and writing the outputs.

    python -m benchmarks.bench_reconstruct [--refine 15] [--repeat 3]

Runs the shipped model on the shipped example photos (320 x 240: networks at the model's 160 x 120, outputs at
320 x 240), on the CPU and on a GPU where one is present. Loading the checkpoint is timed once, apart. For larger
photos see bench_fullres.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine, table
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor, load_photo, write_outputs
from worldfromblur.reconstruct.refine import DEFAULT_STEPS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--refine", type=int, default=DEFAULT_STEPS, help="refinement iterations (default: wfb reconstruct's)")
    ap.add_argument("--repeat", type=int, default=3, help="runs over the examples (median reported)")
    args = ap.parse_args()
    photos = sorted(EXAMPLES.glob("*.png"))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        t = time.perf_counter()
        model = load_model(shipped_model())[0]
        load_model_s = time.perf_counter() - t
        for steps in (0, args.refine):
            engine = Reconstructor(model, device, refine_steps=steps)
            engine(load_photo(photos[0]))  # warm-up
            parts: dict[str, list[float]] = {"load": [], "networks": [], "refine": [], "full": [], "write": [],
                                             "total": []}
            for _ in range(args.repeat):
                for photo_path in photos:
                    with tempfile.TemporaryDirectory() as tmp:
                        t0 = time.perf_counter()
                        photo = load_photo(photo_path)
                        t1 = time.perf_counter()
                        rec = engine(photo)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        write_outputs(rec, Path(tmp) / "out")
                        t2 = time.perf_counter()
                    parts["load"].append(t1 - t0 + rec.timings["prepare_s"])
                    parts["networks"].append(rec.timings["networks_s"])
                    parts["refine"].append(rec.timings["refine_s"])
                    parts["full"].append(rec.timings.get("full_resolution_s", 0.0))
                    parts["write"].append(rec.timings["write_s"])
                    parts["total"].append(t2 - t0)
            sizes = " -> ".join("x".join(map(str, v.size)) for v in (rec.work, rec.out))
            rows.append([device, sizes, steps, f"{load_model_s:.2f}", *(f"{statistics.median(parts[k]):.3f}"
                                                                         for k in ("load", "networks", "refine", "full",
                                                                                   "write", "total"))])
    print(f"wfb reconstruct on the {len(photos)} shipped examples, median of {args.repeat} runs each; {machine()}\n")
    print(table(["device", "working -> output size", "refine steps", "checkpoint load s", "photo load s", "networks s",
                 "refine s", "full resolution s", "write outputs s", "total s / photo"], rows))


if __name__ == "__main__":
    main()
