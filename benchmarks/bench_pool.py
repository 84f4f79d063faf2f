"""Time and peak memory of opening a training run's blur stream: its frame pool (``data.pool``) and the stream made
from it, as ``wfb train-model`` does at start.

    python -m benchmarks.bench_pool [--frames 400 1200] [--extra .pools/7scenes-train*2 ...] [--held-out 0.05]

Each row builds ``[synthetic:N, EXTRA...]`` with :func:`worldfromblur.data.pool.build_pool`, then the
:class:`~worldfromblur.data.stream.BlurStream` of its training frames at 160 x 120, in a fresh process (so that its
peak resident memory is its own), and prints the seconds and peak memory after each, and the size of the pool's
tensors (what training keeps). The procedural frames are rendered on every core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import table

CHILD = """
import json, resource, sys, time
from worldfromblur.data.pool import build_pool
from worldfromblur.data.stream import BlurStream, StreamOptions

def main():
    specs, held_out = json.loads(sys.argv[1]), float(sys.argv[2])
    t = time.perf_counter()
    train, held = build_pool(specs, 0, held_out, progress=False)
    seconds, pool_peak = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kept = sum(x.numel() * x.element_size() for p in (train, held) if p is not None for x in (p.rgb, p.depth))
    t = time.perf_counter()
    BlurStream(train, StreamOptions(size=[160, 120]))
    print(json.dumps({"frames": len(train) + (len(held) if held is not None else 0), "s": seconds,
                      "peak_gib": pool_peak, "stream_s": time.perf_counter() - t,
                      "stream_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "kept_gib": kept / 2**30}))

if __name__ == "__main__":
    main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[400, 1200], help="procedural frames (synthetic:N)")
    ap.add_argument("--extra", nargs="*", default=[], help="more data.pool entries (pool folders, with *K repeats)")
    ap.add_argument("--held-out", type=float, default=0.05)
    args = ap.parse_args()
    rows = []
    for n in args.frames:
        specs = [f"synthetic:{n}", *args.extra]
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(specs), str(args.held_out)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"building {specs} failed:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append([", ".join(specs), r["frames"], f"{r['s']:.1f}", f"{r['peak_gib']:.2f}", f"{r['stream_s']:.1f}",
                     f"{r['stream_peak_gib']:.2f}", f"{r['kept_gib']:.2f}"])
    print(table(["data.pool", "frames (with repeats)", "pool s", "peak GiB after the pool", "stream s",
                 "peak GiB after the stream", "pool tensors GiB"], rows))


if __name__ == "__main__":
    main()
