"""Shared bits of the experiments: the networks and the default refinement on a dataset's test samples, and the
deconvolution experiments' arguments."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.common import table
from worldfromblur.data.dataset import BlurDataset
from worldfromblur.geometry import uv_from_pose
from worldfromblur.models.cycle import WorldFromBlur
from worldfromblur.reconstruct.deconvolve import (
    DEFAULT_ITERATIONS,
    DEFAULT_WEIGHT,
    ROBUST,
)
from worldfromblur.reconstruct.refine import DEFAULT_STEPS, RefineResult, refine


def refined_samples(model: WorldFromBlur, data: Path, num: int) -> Iterator[tuple[dict, dict, RefineResult]]:
    """``(sample, networks, refined)`` for each of the first ``num`` test samples of the dataset ``data`` (built by
    ``wfb make-dataset`` at the model's size), one at a time: the sample (batch of one), the model's output on its
    blurred image, and ``wfb reconstruct``'s default refinement of that output's trajectory (from the networks'
    frame and the depth the motion was solved with)."""
    for i, s in enumerate(DataLoader(BlurDataset(data, split="test"), batch_size=1)):
        if i >= num:
            break
        with torch.no_grad():
            o = model(s["blurred"], s["K"])
        r = refine(s["blurred"], o["deblurred"], o["motion_depth"], o["u"], o["v"], s["K"], DEFAULT_STEPS,
                   averaging=model.cfg.averaging)
        yield s, o, r


def true_motion(sample: dict, u_near: torch.Tensor,
                depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sample's true trajectory (u, v) (1, 2n, 3), in the time order closer to ``u_near`` (a blur is the same
    either way), and its true depth with ``depth`` where none was measured."""
    u, v = uv_from_pose(sample["poses"])
    if (u.flip(1) - u_near).norm() < (u - u_near).norm():
        u, v = u.flip(1), v.flip(1)
    return u, v, torch.where(sample["valid_depth"] > 0, sample["depth"], depth)


def psnr_table(scores: dict[str, list[float]]) -> str:
    """The table of mean PSNR per frame kind, and its gain over the row ``"blurred input"``, in the order of
    ``scores`` (name: one PSNR per sample)."""
    base = float(np.mean(scores["blurred input"]))
    rows = [[name, f"{np.mean(v):.2f}", f"{np.mean(v) - base:+.2f}"] for name, v in scores.items()]
    return table(["frame", "PSNR dB", "vs blurred"], rows)


def deconvolution_arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments of the experiments that deconvolve a dataset's test samples at the model's size: the dataset,
    how many samples, the solve's lambda, iterations and robust pass, and the model."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="a dataset built by wfb make-dataset, at the model's size")
    ap.add_argument("--num", type=int, default=40, help="first N test samples (default 40)")
    ap.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, help="the deconvolution's lambda")
    ap.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="conjugate-gradient iterations")
    ap.add_argument("--robust", type=float, default=ROBUST, help="the robust pass's Huber threshold (0: none)")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    return ap
