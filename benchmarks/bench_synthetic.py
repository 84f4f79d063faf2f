"""Samples per second of the synthetic engine: one process, and a full build with all workers.

    python -m benchmarks.bench_synthetic [--num 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine, table
from worldfromblur.cli.arguments import default_workers
from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
from worldfromblur.data.synthetic.textures import make_texture_bank
from worldfromblur.data.synthetic.engine import render_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=16, help="samples per measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    workers = default_workers()
    rows = []
    for W, H, step in ((320, 240, 1.0), (320, 240, 2.0), (640, 480, 1.0)):
        opts = SyntheticOptions(width=W, height=H, subframe_px=step)
        bank = make_texture_bank(0)
        t = time.perf_counter()
        instants = 0
        for i in range(args.num):
            instants += 6 * render_sample(0, i, opts, bank).subframes + 1
        single = args.num / (time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run_build(Path(tmp) / "ds", plan_synthetic(opts, args.num, 0), workers=workers, progress=False)
            full = args.num / (time.perf_counter() - t)
        rows.append([f"{W}x{H}", step, f"{instants / args.num:.1f}", f"{single:.2f}", workers, f"{full:.2f}",
                     f"{10000 / full / 3600:.2f}"])
    print(f"synthetic engine, {args.num} samples, default options; {machine()}\n")
    print(table(["size", "--subframe-px", "instants rendered / sample", "samples/s (1 process)", "workers",
                 "samples/s (build, written)", "hours for 10,000"], rows))


if __name__ == "__main__":
    main()
