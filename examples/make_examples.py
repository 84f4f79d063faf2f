"""Render the shipped example photos and their ground truth (run from the repository root).

    .venv/bin/python examples/make_examples.py

Writes ``examples/ground-truth/`` (a dataset in the package's format: sharp frame, depth, poses, K of each example)
and ``examples/<name>.png``: the blurred photos, with the camera's 35 mm-equivalent focal length in their EXIF, as
a real camera would record it, so ``wfb reconstruct`` finds the intrinsics by itself. The scenes come from a seed the
shipped model never saw in training (it was trained on seed 0).
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

from PIL import Image

from worldfromblur.data.build import run_build
from worldfromblur.data.format import read_sample
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
from worldfromblur.reconstruct.photo import EXIF_FOCAL_35MM, EXIF_IFD, FULL_FRAME_DIAGONAL_MM

SEED = 2026
CANDIDATES = 24
NAMES = ["room-1", "room-2", "room-3"]
BLUR_PX = (8.0, 30.0)  # median blur path of a chosen example, pixels at 320x240


def main() -> int:
    here = Path(__file__).resolve().parent
    work = here / ".candidates"
    if work.exists():
        shutil.rmtree(work)
    manifest = run_build(work, plan_synthetic(SyntheticOptions(), CANDIDATES, SEED), workers=2, progress=False)
    chosen, scenes = [], set()
    for sid in sorted(manifest["scenes"]):
        rec = read_sample(work / "samples" / sid)
        blur = rec.meta["stats"]["blur_px_median"]
        if BLUR_PX[0] <= blur <= BLUR_PX[1] and rec.meta["scene"] not in scenes:
            chosen.append(sid)
            scenes.add(rec.meta["scene"])
        if len(chosen) == len(NAMES):
            break
    if len(chosen) < len(NAMES):
        print("not enough candidates in the blur range; raise CANDIDATES", file=sys.stderr)
        return 1
    gt = here / "ground-truth"
    if gt.exists():
        shutil.rmtree(gt)
    (gt / "samples").mkdir(parents=True)
    for name, sid in zip(NAMES, chosen):
        shutil.copytree(work / "samples" / sid, gt / "samples" / name)
        rec = read_sample(gt / "samples" / name)
        W, H = rec.sharp.shape[1], rec.sharp.shape[0]
        f35 = rec.K[0, 0] * FULL_FRAME_DIAGONAL_MM / math.hypot(W, H)
        exif = Image.Exif()
        exif.get_ifd(EXIF_IFD)[EXIF_FOCAL_35MM] = int(round(f35))
        Image.fromarray(rec.blurred).save(here / f"{name}.png", exif=exif.tobytes())  # PNG keeps only bytes
        print(f"{name}: sample {sid}, blur {rec.meta['stats']['blur_px_median']:.1f} px, 35 mm focal {f35:.2f} "
              f"-> EXIF {int(round(f35))} mm")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
