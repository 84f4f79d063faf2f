"""Shared bits of the experiments: the networks and the default refinement on a dataset's test samples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from worldfromblur.data.dataset import BlurDataset
from worldfromblur.models.cycle import WorldFromBlur
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
