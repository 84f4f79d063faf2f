"""High-frame-rate video as real blurred/sharp pairs: the frames around a centre frame averaged in linear light, as
a slower camera's exposure would integrate them; the centre frame is the sharp truth. Shared by the benchmarks and
experiments that score deblurring on real camera motion."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldfromblur.evaluation.video import read_frame as read
from worldfromblur.evaluation.video import video_windows as windows

__all__ = ["read", "video_arguments", "video_frames", "windows"]


def video_arguments(doc: str) -> argparse.ArgumentParser:
    """The command line of the benchmarks that blur high-frame-rate video: frames, checkpoint, window spacing, lengths."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frames", type=Path, help="folder of consecutive sharp video frames")
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one)")
    ap.add_argument("--every", type=int, default=20, help="frames between window centres (default 20)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[9, 11, 13], help="frames per blur (default 9 11 13)")
    return ap


def video_frames(args) -> list[Path]:
    """The sorted frames of ``args.frames``; exits when there are fewer than the longest blur needs."""
    frames = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(frames) < max(args.lengths):
        raise SystemExit(f"{args.frames}: {len(frames)} frames, fewer than the longest blur ({max(args.lengths)})")
    return frames
