"""Loading a trained model from checkpoints (``model.safetensors`` + ``config.yaml``), never by unpickling."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from safetensors.torch import save_file

from ..checkpoint import checkpoint_dirs, load_weights
from ..errors import WfbError
from .config import ModelConfig
from .cycle import WorldFromBlur


MODULE_FIELDS = {"deblur": ("deblur", "deblur_widths", "deblur_blocks"), "depth": ("depth", "depth_focal"),
                 "motion": ("motion",)}
"""The model config fields that define each module's architecture."""


def shipped_model() -> Path:
    """The folder of the model shipped inside the package (``model.safetensors`` + ``config.yaml``)."""
    return Path(str(resources.files("worldfromblur") / "weights" / "default"))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder's newest checkpoint."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    if (path / "model" / "model.safetensors").is_file():  # a `wfb train-model` folder: its exported model
        return path / "model"
    found = checkpoint_dirs(path)
    if found:
        return found[-1]
    raise WfbError(f"{path}: not a checkpoint (no model.safetensors) and not a run folder with checkpoints")


def load_module(model: WorldFromBlur, name: str, path: str | Path, context: str = "") -> Path:
    """Load one module ("deblur", "depth" or "motion") of ``model`` from a checkpoint or run folder, where its
    weights are stored under the module's name. Returns the checkpoint used. ``context`` prefixes error messages."""
    ckpt = resolve_checkpoint(path)
    weights = load_weights(ckpt)
    part = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
    if not part:
        raise WfbError(f"{context}{ckpt} holds no weights for the {name} module")
    try:
        getattr(model, name).load_state_dict(part)
    except RuntimeError as err:
        raise WfbError(f"{context}{ckpt}: its {name} weights do not fit the configured {name} module "
                       f"({str(err).splitlines()[0]})") from None
    return ckpt


def model_config_of(ckpt: Path) -> ModelConfig:
    path = ckpt / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text())
        return ModelConfig.from_dict(cfg["model"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise WfbError(f"{path}: missing or unreadable model config ({type(err).__name__}: {err})") from None


def load_model(spec: str | Path) -> tuple[WorldFromBlur, dict]:
    """Build and load a model in eval mode.

    ``spec`` is a checkpoint or run folder, or ``module:path,module:path,...`` to assemble a model from stage-1
    checkpoints (each module's weights and architecture from its own run; the first one's config decides the rest).
    Returns the model and a description of where each module came from.
    """
    parts = str(spec).split(",")
    if all(":" in p and p.split(":", 1)[0] in ("deblur", "depth", "motion") for p in parts):
        sources = {p.split(":", 1)[0]: resolve_checkpoint(p.split(":", 1)[1]) for p in parts}
    elif len(parts) == 1:
        ckpt = resolve_checkpoint(spec)
        sources = {m: ckpt for m in ("deblur", "depth", "motion")}
    else:
        raise WfbError(f"{spec}: give a checkpoint or run folder, or module:path pairs such as deblur:runs/a,depth:runs/b")
    configs = {ckpt: model_config_of(ckpt) for ckpt in dict.fromkeys(sources.values())}  # each read once
    cfg = ModelConfig.from_dict(next(iter(configs.values())).to_dict())
    for module, ckpt in sources.items():  # each module's architecture comes from the run that trained it
        for key in MODULE_FIELDS[module]:
            setattr(cfg, key, getattr(configs[ckpt], key))
    model = WorldFromBlur(cfg)
    for module, ckpt in sources.items():
        load_module(model, module, ckpt)
    return model.eval(), {m: str(c) for m, c in sources.items()}


class _PlainDumper(yaml.SafeDumper):
    """Writes a value used twice (e.g. a previous model's provenance quoted inside a new one) twice, not as a YAML
    alias, so the file reads as plain text."""

    def ignore_aliases(self, data) -> bool:
        return True


def export_model(spec: str | Path, out: str | Path, provenance: dict | None = None) -> Path:
    """Write a model (a checkpoint, a run folder, or ``module:path,...`` joining stage-1 runs, as for
    :func:`load_model`) as a standalone folder: ``model.safetensors`` (every tensor of every module) and
    ``config.yaml`` (the ``model`` section, and ``provenance``: how it was made). This is how the shipped model is
    made; ``wfb reconstruct --checkpoint OUT`` and ``load_model(OUT)`` read it."""
    model, _ = load_model(spec)
    out = Path(out)
    if out.exists():
        raise WfbError(f"{out}: already exists; choose a new folder")
    tmp = out.with_name(f".tmp-{out.name}")
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "world-from-blur model"})
    (tmp / "config.yaml").write_text(yaml.dump({"model": model.cfg.to_dict(), "provenance": provenance or {}},
                                               Dumper=_PlainDumper, sort_keys=False))
    tmp.rename(out)
    return out
