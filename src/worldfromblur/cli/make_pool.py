"""``wfb make-pool``: a folder of sharp RGB-D frames for the training stream (``data.source=stream``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import WfbError
from .arguments import count, default_workers, image_size, seed


def register(sub) -> None:
    p = sub.add_parser(
        "make-pool",
        help="collect sharp RGB-D frames for the on-the-fly blur stream",
        description="Collect sharp colour frames with depth and intrinsics, at one size, into a pool folder that "
        "`wfb train` / `wfb train-model` read with data.source=stream data.pool=[DIR]. The stream draws the camera "
        "motion and renders the blur itself, so any RGB-D frame will do; poses are not needed.",
    )
    p.add_argument("source", choices=["synthetic", "dataset", "tum", "icl", "nyu", "7scenes", "folders"],
                   help="procedural rooms, a built dataset's sharp frames, or RGB-D video in its original format")
    p.add_argument("--out", type=Path, required=True, help="new pool folder (never overwritten)")
    p.add_argument("--root", type=Path, nargs="+", metavar="DIR",
                   help="dataset folder (dataset) or sequence folder(s) (tum, icl, nyu, 7scenes, folders)")
    p.add_argument("--size", type=image_size, default=(320, 240), help="frame size WxH (default 320x240)")
    p.add_argument("--num", type=count, default=1000, help="synthetic: number of frames (default 1000)")
    p.add_argument("--seed", type=seed, default=0, help="synthetic: random seed")
    p.add_argument("--textures", type=Path, help="synthetic: folder of photographs to use as textures")
    p.add_argument("--texture-rooms", type=int, default=8, metavar="N",
                   help="synthetic: a new bank of 48 textures every N frames (default 8; 0: one bank, the seed's)")
    p.add_argument("--focal-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="synthetic: each frame's focal length is the default camera's times a factor drawn "
                   "log-uniformly from LO..HI (a pool over many fields of view; default: the default camera's)")
    p.add_argument("--split", default="train", help="dataset: split to take the frames of (default train)")
    p.add_argument("--stride", type=count, default=1, help="video: take every STRIDE-th frame (default 1)")
    p.add_argument("--frame-range", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   help="7scenes, folders: only frames FIRST..LAST (inclusive), to keep validation and test frames apart")
    p.add_argument("--camera", choices=["freiburg1", "freiburg2", "freiburg3"], help="tum: camera (default: from the name)")
    p.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="video: colour intrinsics in pixels of the source images, overriding the dataset's")
    p.add_argument("--jpeg", type=int, default=0, metavar="QUALITY",
                   help="store colour as JPEG of this quality (1-100) instead of PNG: about a fifth of the size")
    p.add_argument("--workers", type=count, default=default_workers(), help="synthetic: worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.pool import dataset_pool, rgbd_pool, save_pool, synthetic_pool
    from ..data.rgbd import RGBDOptions

    if not 0 <= args.jpeg <= 100:
        raise WfbError(f"--jpeg must be a quality from 1 to 100 (0 = PNG), got {args.jpeg}")
    if args.out.exists() and any(args.out.iterdir()):
        raise WfbError(f"{args.out}: already exists and is not empty; choose a new --out (a pool is never overwritten)")
    if args.source != "synthetic" and not args.root:
        raise WfbError(f"make-pool {args.source} needs --root")
    if args.source == "synthetic":
        if args.texture_rooms < 0:
            raise WfbError(f"--texture-rooms must be 0 (one bank) or a number of frames, got {args.texture_rooms}")
        pool = synthetic_pool(args.num, args.size, args.seed, str(args.textures) if args.textures else None,
                              args.workers, not args.quiet, texture_rooms=args.texture_rooms,
                              focal_range=args.focal_range)
    elif args.source == "dataset":
        if len(args.root) != 1:
            raise WfbError("make-pool dataset takes one --root dataset folder")
        pool = dataset_pool(args.root[0], args.split)
    else:
        opts = RGBDOptions(kind=args.source, width=args.size[0], height=args.size[1], camera=args.camera,
                           intrinsics=list(args.intrinsics) if args.intrinsics else None,
                           frame_range=list(args.frame_range) if args.frame_range else None)
        pool = rgbd_pool([str(r) for r in args.root], opts, args.stride, not args.quiet)
    save_pool(pool, args.out, args.jpeg)
    print(f"wrote {args.out}: {len(pool)} frames of {pool.size[0]}x{pool.size[1]} from "
          f"{', '.join(sorted(set(pool.sources)))}")
    return 0
