"""Seconds and peak memory of ``wfb reconstruct`` per photo size, from 0.3 to 12 megapixels.

    python -m benchmarks.bench_fullres [--sizes 0.3 1 4 12] [--threads 2] [--device cpu]

Each size is the shipped example photo resized to that many megapixels (4:3) and reconstructed with the shipped
model into a temporary folder, with ``--max-pixels`` at the size (so 12 MP is really reconstructed at 12 MP) and the
default refinement, in a fresh process per size so that its peak resident memory (``ru_maxrss``) is its own. Times are
those ``summary.json`` records: networks at the working size, the full-resolution part (deblurring, depth, re-blur)
and writing every output file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

from benchmarks.common import table

CHILD = textwrap.dedent("""
    import json, resource, sys, tempfile, time
    from pathlib import Path
    import torch
    from PIL import Image
    torch.set_num_threads({threads})
    from worldfromblur.models.io import load_model, shipped_model
    from worldfromblur.reconstruct import Reconstructor, load_photo, write_outputs
    example = Path({example!r})
    with tempfile.TemporaryDirectory() as tmp:
        w = int(round(({mp} * 1e6 * 4 / 3) ** 0.5)); h = int(round(w * 3 / 4))
        Image.open(example).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(Path(tmp) / "photo.png")
        model = load_model(shipped_model())[0]
        engine = Reconstructor(model, {device!r}, max_pixels=w * h)
        t = time.perf_counter()
        photo = load_photo(Path(tmp) / "photo.png")
        rec = engine(photo)
        summary = write_outputs(rec, Path(tmp) / "out")
        total = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({{"size": [w, h], "total": total, "timings": summary["timings_s"], "peak_gib": peak,
                      "points": summary["points"], "scales": summary["deblur_scales"]}}))
""")


def main() -> None:
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.3, 1, 4, 12], help="megapixels")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    example = Path(__file__).resolve().parents[1] / "examples" / "room-1.png"
    rows = []
    for mp in args.sizes:
        code = CHILD.format(threads=args.threads, example=str(example), mp=mp, device=args.device)
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if run.returncode:
            rows.append([f"{mp:g}", "failed: " + run.stderr.strip().splitlines()[-1], "", "", "", "", "", ""])
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        t, mpx = r["timings"], r["size"][0] * r["size"][1] / 1e6
        rows.append([f"{r['size'][0]}x{r['size'][1]}", f"{r['total']:.1f}", f"{r['total'] / mpx:.1f}",
                     f"{t['networks_s']:.2f}", f"{t.get('full_resolution_s', 0):.1f}", f"{t['write_s']:.1f}",
                     f"{r['peak_gib']:.2f}", f"{r['peak_gib'] / mpx:.2f}"])
    import torch

    print(f"wfb reconstruct (default refinement) of the example photo resized; {args.device}, {args.threads} torch "
          f"threads, torch {torch.__version__}\n")
    print(table(["size", "total s", "s / MP", "networks s", "full resolution s", "write s", "peak GiB",
                 "GiB / MP"], rows))


if __name__ == "__main__":
    main()
