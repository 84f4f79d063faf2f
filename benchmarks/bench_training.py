"""Training samples per second of each shipped config (stage), on CPU and on a GPU where one is present.

    python -m benchmarks.bench_training [--steps 6] [--size 320x240] [--presets compact paper]

Each config trains for --steps steps (after 2 warm-up steps) with its own batch size on a small synthetic dataset
of that size; data loading runs in the main process so the figure is the model's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine, table
from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
from worldfromblur.training import load_config, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--presets", nargs="+", default=["compact", "paper"])
    ap.add_argument("--max-batch", type=int, default=64, help="cap on a config's batch size (memory)")
    ap.add_argument("--paper-cpu-size", default="96x72",
                    help="image size for the paper preset on CPU, where 320x240 takes minutes per step (default 96x72)")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        datasets = {}
        for size in sorted({args.size, args.paper_cpu_size}):
            W, H = (int(x) for x in size.split("x"))
            datasets[size] = Path(tmp) / f"data-{size}"
            run_build(datasets[size], plan_synthetic(SyntheticOptions(width=W, height=H), 16, 0), workers=2, progress=False)
        for device in devices:
            for preset in args.presets:
                size = args.paper_cpu_size if (preset == "paper" and device == "cpu") else args.size
                data = datasets[size]
                for stage in ("deblur", "depth", "motion", "cycle"):
                    cfg = load_config(f"{preset}-{stage}", [f"data.root={data}", "data.split=train", "data.workers=0",
                                                            "image_every=0", "init={}", f"device={device}"])
                    cfg.batch_size = min(cfg.batch_size, args.max_batch)
                    timings = []
                    for steps in (2, 2 + args.steps):  # the difference removes start-up and warm-up
                        cfg.max_steps, cfg.ckpt_every = steps, 10**9
                        cfg.out = str(Path(tmp) / f"{device}-{preset}-{stage}-{steps}")
                        t = time.perf_counter()
                        train(cfg, progress=False)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        timings.append(time.perf_counter() - t)
                    rate = args.steps * cfg.batch_size / (timings[1] - timings[0])
                    rows.append([device, preset, stage, size, cfg.batch_size, f"{rate:.2f}", f"{cfg.batch_size / rate:.2f}"])
    print(f"training throughput, {args.steps} timed steps; {machine()}\n")
    print(table(["device", "preset", "stage", "size", "batch", "samples/s", "s/step"], rows))


if __name__ == "__main__":
    main()
