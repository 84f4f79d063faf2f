"""Source frames per second of the RGB-D builders (TUM, ICL-NUIM, NYU raw) on rendered fixture sequences.

    python -m benchmarks.bench_rgbd [--frames 15]

Each builder reads a sequence of 640x480 frames in its original format and writes 320x240 samples; a source frame
is counted once, though each one serves 2n+1 windows. The build uses every core. Also printed: the NYU odometry's
error against the fixture's true poses, and the TUM builder's odometry against ground truth on the real 7-Scenes
sample when ../shared/data is there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, table
from tests.data.rgbd_fixtures import ICL_K, nyu_recording, record, write_nyu, write_tum
from worldfromblur.cli.arguments import default_workers
from worldfromblur.data.build import run_build
from worldfromblur.data.rgbd import RGBDOptions, plan_rgbd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tum-layout-7scenes-sample"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=15, help="frames per fixture sequence")
    args = ap.parse_args()
    workers = default_workers()
    rows, odometry_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sequences = {
            "tum": write_tum(tmp / "rgbd_dataset_freiburg1_bench", record(args.frames)),
            "icl": write_tum(tmp / "icl_bench", record(args.frames, K=ICL_K), flip_y=True),
            "nyu": write_nyu(tmp / "nyu_bench", nyu_recording(args.frames)),
        }
        cases = [("tum", "geometry", {}), ("tum", "plain", {"max_subframes": 1}), ("icl", "geometry", {}),
                 ("nyu", "geometry", {}), ("tum", "geometry", {"poses": "odometry"})]
        for kind, synthesis, extra in cases:
            out = tmp / f"out-{kind}-{synthesis}-{len(extra)}"
            plan = plan_rgbd([sequences[kind]], RGBDOptions(kind=kind, **extra))
            t = time.perf_counter()
            manifest = run_build(out, plan, workers=workers, progress=False)
            dt = time.perf_counter() - t
            poses = "odometry" if kind == "nyu" or "poses" in extra else "ground truth"
            rows.append([kind, synthesis, poses, manifest["num_samples"], f"{dt:.1f}", f"{args.frames / dt:.2f}",
                         f"{manifest['num_samples'] / dt:.2f}"])
            if "poses" in extra:
                errs = [json.loads((out / "samples" / s / "meta.json").read_text())["provenance"]["odometry_vs_groundtruth"]
                        for s in manifest["scenes"]]
                odometry_rows.append(["fixture (rendered, exact)", len(errs),
                                      f"{max(e['max_translation_mm'] for e in errs):.2f}",
                                      f"{max(e['max_rotation_deg'] for e in errs):.3f}"])
        if SHARED.is_dir():
            out = tmp / "seven-scenes"
            plan = plan_rgbd([SHARED], RGBDOptions(kind="tum", intrinsics=[585, 585, 320, 240], poses="odometry", stride=6))
            manifest = run_build(out, plan, workers=workers, progress=False)
            errs = [json.loads((out / "samples" / s / "meta.json").read_text())["provenance"]["odometry_vs_groundtruth"]
                    for s in manifest["scenes"]]
            if errs:
                tr = np.array([e["max_translation_mm"] for e in errs])
                rot = np.array([e["max_rotation_deg"] for e in errs])
                odometry_rows.append([f"real 7-Scenes sample ({manifest['num_samples']} built, "
                                      f"{len(manifest['skipped'])} skipped)", len(errs),
                                      f"{np.median(tr):.2f} (max {tr.max():.2f})", f"{np.median(rot):.3f} (max {rot.max():.3f})"])
    print(f"RGB-D builders, {args.frames}-frame 640x480 sequences -> 320x240 samples, {workers} workers; {machine()}\n")
    print(table(["builder", "synthesis", "poses", "samples", "seconds", "source frames/s", "samples/s"], rows))
    print("\nOdometry against ground truth (worst frame of each window, then over windows)\n")
    print(table(["sequence", "windows", "translation error mm", "rotation error deg"], odometry_rows))


if __name__ == "__main__":
    main()
