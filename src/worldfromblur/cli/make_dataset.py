"""``wfb make-dataset``: build a blurred RGB-D dataset in the package's format."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import WfbError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    if w < 16 or h < 16 or w > 4096 or h > 4096:
        raise argparse.ArgumentTypeError(f"size must be between 16x16 and 4096x4096, got {text!r}")
    return w, h


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every builder shares."""
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty; an interrupted build here is resumed)")
    p.add_argument("--n", type=_positive_int, default=3, help="half-window: each exposure spans 2n+1 frame instants (default 3, the paper's 7)")
    p.add_argument("--averaging", choices=["linear", "srgb"], default="linear",
                   help="average instants in linear light (default, as a sensor does) or as sRGB values (the paper)")
    p.add_argument("--splits", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of scenes per split (default 0.8 0.1 0.1); a scene never straddles splits")
    p.add_argument("--workers", type=_positive_int, default=default_workers(), help="worker processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset that already exists in --out")
    p.add_argument("--frames", action="store_true", help="also store the 2n+1 sharp frames of every sample")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("make-dataset", help="build a blurred RGB-D dataset", description=__doc__)
    kinds = p.add_subparsers(dest="kind", metavar="SOURCE")
    kinds.required = True

    s = kinds.add_parser(
        "synthetic",
        help="procedural rooms rendered exactly (no download needed)",
        description="Render procedural furnished rooms seen by a shaking hand-held camera, with exact depth and poses, "
        "and integrate the blur over the exposure. Deterministic for a given --seed.",
    )
    add_common(s)
    s.add_argument("--num", type=_positive_int, default=1000, help="number of samples (default 1000)")
    s.add_argument("--size", type=_size, default=(320, 240), help="image size WxH (default 320x240)")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives a byte-identical dataset")
    s.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics in pixels of --size (default: NYU's Kinect, scaled to --size)")
    s.add_argument("--fps", type=float, default=30.0, help="frame rate of the 2n+1 instants (default 30)")
    s.add_argument("--rot-speed", type=float, nargs=2, default=(1.0, 60.0), metavar=("LO", "HI"),
                   help="angular speed range in deg/s, from near-still to strong shake (default 1 60)")
    s.add_argument("--trans-speed", type=float, nargs=2, default=(0.02, 0.6), metavar=("LO", "HI"),
                   help="linear speed range in m/s (default 0.02 0.6)")
    s.add_argument("--subframe-px", type=float, default=1.0,
                   help="largest pixel motion between two rendered instants of the exposure (default 1.0)")
    s.add_argument("--max-subframes", type=_positive_int, default=8, help="cap on instants per frame interval (default 8)")
    s.add_argument("--noise", type=float, default=0.0,
                   help="sensor noise on the blurred image: std sigma*sqrt(0.2+L) in linear light L (default 0)")
    s.add_argument("--samples-per-scene", type=_positive_int, default=4, help="camera placements per room (default 4)")
    s.add_argument("--textures", type=Path, help="folder of photographs to use as textures, besides procedural ones")
    s.set_defaults(func=run_synthetic)


def check_splits(splits) -> tuple[float, float, float]:
    if any(f < 0 for f in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise WfbError(f"--splits must be three non-negative fractions summing to 1, got {' '.join(map(str, splits))}")
    return tuple(float(f) for f in splits)


def run_synthetic(args) -> int:
    from ..data.build import format_summary, run_build
    from ..data.synthetic import SyntheticOptions, plan_synthetic
    from ..data.synthetic.textures import find_photos

    splits = check_splits(args.splits)
    if args.textures is not None:
        if not args.textures.is_dir():
            raise WfbError(f"{args.textures}: --textures must be a folder of images")
        if not find_photos(args.textures):
            raise WfbError(f"{args.textures}: no PNG/JPEG/TIFF/WebP images found for --textures")
    for name, (lo, hi) in (("--rot-speed", args.rot_speed), ("--trans-speed", args.trans_speed)):
        if not 0 < lo <= hi:
            raise WfbError(f"{name} needs 0 < LO <= HI, got {lo} {hi}")
    w, h = args.size
    opts = SyntheticOptions(
        width=w, height=h, n=args.n, fps=args.fps, intrinsics=list(args.intrinsics) if args.intrinsics else None,
        rot_speed=tuple(args.rot_speed), trans_speed=tuple(args.trans_speed), subframe_px=args.subframe_px,
        max_subframes=args.max_subframes, averaging=args.averaging, noise=args.noise,
        samples_per_scene=args.samples_per_scene, keep_frames=args.frames,
        textures=str(args.textures.resolve()) if args.textures else None,
    )
    manifest = run_build(args.out, plan_synthetic(opts, args.num, args.seed, splits), args.workers, args.overwrite, not args.quiet)
    print(f"wrote {args.out}")
    print(format_summary(manifest, ("blur_px_median", "rotation_deg_per_frame", "translation_cm_per_frame", "subframes",
                                    "depth_min_m", "depth_max_m")))
    return 0


