"""Argument types and defaults shared by the subcommands."""

from __future__ import annotations

import argparse
import os


def image_size(text: str) -> tuple[int, int]:
    """``WxH``, e.g. 320x240, between 16x16 and 4096x4096."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    if w < 16 or h < 16 or w > 4096 or h > 4096:
        raise argparse.ArgumentTypeError(f"size must be between 16x16 and 4096x4096, got {text!r}")
    return w, h


def count(text: str) -> int:
    """A positive whole number, also written as 4e6."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if not value >= 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1 (the bound of ``data.synthetic.engine.check_seed``, restated
    here so that parsing the command line does not import torch)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {2**32 - 1}, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {2**32 - 1}, got {text!r}")
    return value


def default_workers() -> int:
    """The CPU cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
