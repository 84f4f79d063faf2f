"""Checkpoints: weights as safetensors with the config beside them, and a training state that loads without
unpickling arbitrary objects. The file format that training writes and inference reads, so it sits below both
(``worldfromblur.training`` and ``worldfromblur.models.io`` import it; it imports neither).

::

    RUN/checkpoints/step-000200/
      model.safetensors    every tensor of the model's state dict (weights and batch-norm statistics)
      config.yaml          the resolved training config (its ``model`` section rebuilds the network)
      state.pt             step, optimizer, scheduler and RNG states: tensors and plain Python values only,
                           read with ``torch.load(weights_only=True)``

A checkpoint is written into a temporary folder and renamed when complete, so a crash during a save never leaves
a half-written checkpoint under a real name, and the previous ones stay intact.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WfbError

PREFIX = "step-"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, config_yaml: str, state: dict, keep: int = 3) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".tmp-{PREFIX}{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"step": str(step)})
    (tmp / "config.yaml").write_text(config_yaml)
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    path = Path(ckpt) / "model.safetensors"
    if not path.is_file():
        raise WfbError(f"{path}: missing; is {ckpt} a world-from-blur checkpoint folder?")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WfbError(f"{path}: unreadable weights ({err})") from None


def load_checkpoint(ckpt: Path) -> tuple[dict, dict, dict]:
    """(weights, training state, config dict) of one checkpoint; WfbError if any part is missing or corrupt."""
    ckpt = Path(ckpt)
    weights = load_weights(ckpt)
    try:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        config = yaml.safe_load((ckpt / "config.yaml").read_text())
    except Exception as err:  # any failure to read means this checkpoint cannot be used
        raise WfbError(f"{ckpt}: unreadable training state or config ({type(err).__name__}: {err})".replace("\n", " ")) from None
    return weights, state, config


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict, dict, dict]:
    """The newest checkpoint that loads; corrupt newer ones are reported and skipped."""
    candidates = checkpoint_dirs(run_dir)
    if not candidates:
        raise WfbError(f"{run_dir}: no checkpoint to resume from; start without --resume")
    for ckpt in reversed(candidates):
        try:
            return (ckpt, *load_checkpoint(ckpt))
        except WfbError as err:
            print(f"wfb: warning: {err}; trying an older checkpoint", file=sys.stderr)
    raise WfbError(f"{run_dir}: every checkpoint is unreadable; start again without --resume")
