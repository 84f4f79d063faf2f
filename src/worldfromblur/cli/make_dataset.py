"""``wfb make-dataset``: build a blurred RGB-D dataset in the package's format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import WfbError
from ..imaging import Exposure
from .arguments import count, default_workers, image_size, seed


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every builder shares."""
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty; an interrupted build here is resumed)")
    p.add_argument("--n", type=count, default=Exposure.n,
                   help=f"half-window: each exposure spans 2n+1 frame instants (default {Exposure.n}, the paper's 7)")
    p.add_argument("--averaging", choices=["linear", "srgb"], default=Exposure.averaging,
                   help="average instants in linear light (default, as a sensor does) or as sRGB values (the paper)")
    p.add_argument("--subframe-px", type=float, default=Exposure.subframe_px,
                   help="largest pixel motion between two rendered instants of the exposure "
                   f"(default {Exposure.subframe_px:g})")
    p.add_argument("--max-subframes", type=count, default=Exposure.max_subframes,
                   help=f"cap on instants per frame interval (default {Exposure.max_subframes}; 1: the paper's plain "
                   "average of the 2n+1 frames)")
    p.add_argument("--splits", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of scenes per split (default 0.8 0.1 0.1); a scene never straddles splits")
    p.add_argument("--workers", type=count, default=default_workers(), help="worker processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset that already exists in --out")
    p.add_argument("--frames", action="store_true", help="also store the 2n+1 sharp frames of every sample")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


RGBD_SOURCES = {
    "tum": ("TUM RGB-D sequences (rgb.txt, depth.txt, groundtruth.txt)",
            "Windows of 2n+1 frames of TUM RGB-D sequences, with ground-truth poses interpolated to the frame times."),
    "icl": ("ICL-NUIM sequences, TUM-compatible release",
            "Windows of 2n+1 frames of ICL-NUIM sequences (TUM layout or associations.txt + *.gt.freiburg); the "
            "dataset's negative fy is handled by flipping the camera's y axis."),
    "nyu": ("NYU Depth v2 raw scene folders (r-*.ppm, d-*.pgm); poses by RGB-D odometry",
            "Windows of 2n+1 frames of NYU Depth v2 raw scenes: depth paired and registered to colour as the NYU "
            "toolbox does, poses estimated by dense RGB-D odometry (NYU has no ground truth)."),
    "7scenes": ("Microsoft 7-Scenes sequence folders (frame-*.color.png|jpg, .depth.png, .pose.txt)",
                "Windows of 2n+1 frames of 7-Scenes sequences, with their KinectFusion poses."),
    "folders": ("frame folders: color/NNNNN.jpg|png, depth/NNNNN.png, pose/NNNNN.txt (ScanNet exports, TSDF demos)",
                ("Windows of 2n+1 frames of a folder holding color/, depth/ (16-bit, registered to colour) and pose/ "
                 "(4 x 4 camera-to-world) files numbered alike, with camera-intrinsics.txt or "
                 "intrinsic/intrinsic_color.txt.")),
}


def register(sub) -> None:
    p = sub.add_parser("make-dataset", help="build a blurred RGB-D dataset", description=__doc__)
    kinds = p.add_subparsers(dest="kind", metavar="SOURCE")
    kinds.required = True
    _register_synthetic(kinds)
    for kind, (short, long) in RGBD_SOURCES.items():
        _register_rgbd(kinds, kind, short, long)


def _register_synthetic(kinds) -> None:
    s = kinds.add_parser(
        "synthetic",
        help="procedural rooms rendered exactly (no download needed)",
        description="Render procedural furnished rooms seen by a shaking hand-held camera, with exact depth and poses, "
        "and integrate the blur over the exposure. Deterministic for a given --seed.",
    )
    add_common(s)
    s.add_argument("--num", type=count, default=1000, help="number of samples (default 1000)")
    s.add_argument("--size", type=image_size, default=(320, 240), help="image size WxH (default 320x240)")
    s.add_argument("--seed", type=seed, default=0, help="random seed; the same seed gives a byte-identical dataset")
    s.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics in pixels of --size (default: NYU's Kinect, scaled to --size)")
    s.add_argument("--fps", type=float, default=Exposure.fps, help=f"frame rate of the 2n+1 instants (default {Exposure.fps:g})")
    s.add_argument("--rot-speed", type=float, nargs=2, default=(1.0, 60.0), metavar=("LO", "HI"),
                   help="angular speed range in deg/s, from near-still to strong shake (default 1 60)")
    s.add_argument("--trans-speed", type=float, nargs=2, default=(0.02, 0.6), metavar=("LO", "HI"),
                   help="linear speed range in m/s (default 0.02 0.6)")
    s.add_argument("--noise", type=float, default=0.0,
                   help="sensor noise on the blurred image: std sigma*sqrt(0.2+L) in linear light L (default 0)")
    s.add_argument("--samples-per-scene", type=count, default=4, help="camera placements per room (default 4)")
    s.add_argument("--textures", type=Path, help="folder of photographs to use as textures, besides procedural ones")
    s.add_argument("--texture-rooms", type=int, default=0, metavar="N",
                   help="a new bank of 48 textures every N rooms (default 0: one bank for the whole build, the seed's)")
    s.set_defaults(func=run_synthetic)


def _register_rgbd(kinds, kind: str, short: str, long: str) -> None:
    r = kinds.add_parser(kind, help=short, description=long + " The blur is synthesised from the frames and "
                         "their depth with intermediate instants, or as the paper's plain average of the frames "
                         "(--max-subframes 1).")
    add_common(r)
    r.add_argument("--root", type=Path, nargs="+", required=True, metavar="SEQ_DIR",
                   help="sequence folder(s); each is a scene, never split across train/val/test")
    r.add_argument("--size", type=image_size, default=(320, 240), help="output image size WxH (default 320x240)")
    r.add_argument("--stride", type=count, default=1, help="frames between window centres (default 1)")
    r.add_argument("--block-frames", type=int, default=0,
                   help="cut each sequence into independent scenes of this many frames, so that one sequence can "
                   "feed all splits (default 0: a sequence is one scene)")
    r.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="colour intrinsics in pixels of the source images, overriding the dataset's")
    r.add_argument("--seed", type=seed, default=0, help="seed of the assignment of scenes to splits")
    if kind == "tum":
        r.add_argument("--camera", choices=["freiburg1", "freiburg2", "freiburg3"],
                       help="TUM camera (default: read from the sequence name)")
    if kind == "icl":
        r.add_argument("--depth-is-ray-distance", action="store_true",
                       help="depth images hold distance along the ray (ICL-NUIM's original release), not z")
    if kind == "folders":
        r.add_argument("--fps", type=float, default=Exposure.fps,
                       help=f"frame rate of the recording (default {Exposure.fps:g})")
        r.add_argument("--depth-scale", type=float, default=1000.0,
                       help="depth PNG units per metre (default 1000: millimetres)")
    if kind in ("7scenes", "folders"):
        r.add_argument("--frame-range", type=int, nargs=2, metavar=("FIRST", "LAST"),
                       help="use only frames FIRST..LAST (inclusive), e.g. to keep a test part apart")
    if kind in ("tum", "icl", "7scenes", "folders"):
        r.add_argument("--poses", choices=["groundtruth", "odometry"], default="groundtruth",
                       help="use the ground-truth trajectory (default) or estimate poses by RGB-D odometry")
    if kind == "nyu":
        r.add_argument("--pgm-byte-order", choices=["little", "big"], default="little",
                       help="byte order of the 16-bit depth PGMs (default little: what the NYU toolbox reads, "
                       "with imread and swapbytes)")
    r.set_defaults(func=run_rgbd)


def check_splits(splits) -> tuple[float, float, float]:
    if any(f < 0 for f in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise WfbError(f"--splits must be three non-negative fractions summing to 1, got {' '.join(map(str, splits))}")
    return tuple(float(f) for f in splits)


def run_synthetic(args) -> int:
    from ..data.build import format_summary, run_build
    from ..data.synthetic import SyntheticOptions, plan_synthetic
    from ..data.synthetic.textures import texture_photos

    splits = check_splits(args.splits)
    if args.textures is not None:
        if not args.textures.is_dir():
            raise WfbError(f"{args.textures}: --textures must be a folder of images")
        if not texture_photos(args.textures):
            raise WfbError(f"{args.textures}: no PNG/JPEG/TIFF/WebP images found for --textures")
    for name, (lo, hi) in (("--rot-speed", args.rot_speed), ("--trans-speed", args.trans_speed)):
        if not 0 < lo <= hi:
            raise WfbError(f"{name} needs 0 < LO <= HI, got {lo} {hi}")
    if args.texture_rooms < 0:
        raise WfbError(f"--texture-rooms must be 0 (one bank) or a number of rooms, got {args.texture_rooms}")
    w, h = args.size
    opts = SyntheticOptions(
        width=w, height=h, n=args.n, fps=args.fps, intrinsics=list(args.intrinsics) if args.intrinsics else None,
        rot_speed=tuple(args.rot_speed), trans_speed=tuple(args.trans_speed), subframe_px=args.subframe_px,
        max_subframes=args.max_subframes, averaging=args.averaging, noise=args.noise,
        samples_per_scene=args.samples_per_scene, keep_frames=args.frames,
        textures=str(args.textures.resolve()) if args.textures else None, texture_rooms=args.texture_rooms,
    )
    manifest = run_build(args.out, plan_synthetic(opts, args.num, args.seed, splits), args.workers, args.overwrite, not args.quiet)
    print(f"wrote {args.out}")
    print(format_summary(manifest, ("blur_px_median", "rotation_deg_per_frame", "translation_cm_per_frame", "subframes",
                                    "depth_min_m", "depth_max_m")))
    return 0




def run_rgbd(args) -> int:
    from ..data.build import format_summary, run_build
    from ..data.rgbd import RGBDOptions, plan_rgbd

    splits = check_splits(args.splits)
    if args.subframe_px <= 0:
        raise WfbError(f"--subframe-px must be positive, got {args.subframe_px}")
    if args.block_frames < 0:
        raise WfbError(f"--block-frames must be 0 or more, got {args.block_frames}")
    for flag in ("fps", "depth_scale"):
        if getattr(args, flag, 1.0) <= 0:
            raise WfbError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    w, h = args.size
    opts = RGBDOptions(
        kind=args.kind, width=w, height=h, n=args.n, stride=args.stride,
        averaging=args.averaging, subframe_px=args.subframe_px, max_subframes=args.max_subframes,
        poses=getattr(args, "poses", "odometry"), block_frames=args.block_frames,
        camera=getattr(args, "camera", None), intrinsics=list(args.intrinsics) if args.intrinsics else None,
        depth_is_ray_distance=getattr(args, "depth_is_ray_distance", False),
        pgm_byte_order=getattr(args, "pgm_byte_order", "little"), keep_frames=args.frames,
        frame_range=list(args.frame_range) if getattr(args, "frame_range", None) else None,
        fps=getattr(args, "fps", Exposure.fps), depth_scale=getattr(args, "depth_scale", None),
    )
    plan = plan_rgbd([str(r) for r in args.root], opts, splits, args.seed)
    manifest = run_build(args.out, plan, args.workers, args.overwrite, not args.quiet)
    print(f"wrote {args.out}")
    print(format_summary(manifest, ("blur_px_median", "rotation_deg_per_frame", "translation_cm_per_frame", "subframes",
                                    "depth_min_m", "depth_max_m")))
    return 0
