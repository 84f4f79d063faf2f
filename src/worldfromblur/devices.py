"""The one rule every command uses to pick its device: ``auto`` (the default everywhere) is a CUDA GPU when there is
one and the CPU otherwise; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given, ``cuda`` refused where there is none."""

from __future__ import annotations

import torch

from .errors import WfbError


def resolve_device(name: str, option: str = "--device") -> str:
    """``name`` as a torch device string, or a one-line error naming ``option`` and the fix."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise WfbError(f"{option} must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WfbError(f"{option} {name} but no CUDA device is available; use {option} auto or cpu")
    return name
