"""Typed model configuration: modules are chosen by name, so an experiment is a config file."""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import yaml

from ..errors import WfbError
from ..imaging import Averaging, Exposure


@dataclass
class ModelConfig:
    """Which modules make up the cycle, and how the cycle re-blurs."""

    deblur: Literal["compact", "cnn_l15", "nafnet"] = "compact"
    """Deblurring module: "compact" (U-Net, residual), "cnn_l15" (the paper's) or "nafnet" (a NAFNet-class U-Net of
    activation-free blocks, :mod:`worldfromblur.models.nafnet`)."""
    deblur_widths: list | None = None
    """Channels per scale of the compact deblurring U-Net (None: [16, 32, 64]); each extra scale doubles how far
    it sees, which long blur needs. For deblur = "nafnet": its first level's width alone (None: [16]); not for
    "cnn_l15"."""
    deblur_blocks: list | None = None
    """Blocks of each encoder level of the nafnet deblur module, then of its middle (None: [1, 1, 1, 2, 1]); the
    paper's GoPro model is [1, 1, 1, 28, 1] with deblur_widths [32]. Only for deblur = "nafnet"."""
    depth: Literal["compact", "two_branch", "eigen", "effnet_lite0"] = "compact"
    """Depth module: "compact" (U-Net), "two_branch" (the paper's, Fig. 6), "eigen" (Eigen et al. 2014) or
    "effnet_lite0" (an EfficientNet-Lite0 encoder that can start from ImageNet weights, and a U-Net decoder;
    :mod:`worldfromblur.models.efficientnet`)."""
    motion: Literal["lstm", "resnet_lstm", "paths"] = "lstm"
    """Motion module: "lstm" (joint encoder of both images, the paper's LSTM pose head), "resnet_lstm" (the paper's,
    Fig. 3) or "paths" (per-pixel paths and a pose solve; see :mod:`worldfromblur.pose_solve`). "compact", this
    head's name in earlier releases, is read as "lstm"."""
    n: int = Exposure.n
    """Half window: 2n poses around the reference instant (the paper: n = 3)."""
    min_depth: float = 0.1
    """Floor added to every depth output, metres (a warp needs positive depth everywhere)."""
    depth_focal: float | None = None
    """Canonical focal length of the depth module, in pixels of the image it reads. None: its output is the metric
    depth, whatever the camera (releases 1-5). A number f_c: its output is the depth a camera of focal length f_c
    would see from the same image, and the model's depth is that times fx / f_c, fx taken from K at the image's size
    (as Metric3D does): an object's size in pixels says how far it is only once the focal length is known, so the
    depth network no longer has to guess the camera, and photos from wide or long lenses get their own scale.
    Needs K wherever depth is estimated."""
    subframes: int = 1
    """Instants per frame interval when the cycle re-blurs (1 = the paper's 2n + 1 frame average)."""
    averaging: Averaging = Exposure.averaging
    """How the cycle averages the re-blurred instants (see :data:`worldfromblur.imaging.Averaging`; "srgb" is the
    paper's plain average). Checkpoints of earlier releases say ``linear_light: true/false``, read as "linear"/"srgb"."""
    warp_iterations: int = 3
    """Fixed-point steps of the depth warp (see geometry.warp)."""
    backbone_weights: dict = field(default_factory=dict)
    """Optional local ImageNet weights per backbone, e.g. {"resnet152": "path.pth", "vgg16": "path.pth"}."""
    train: list = field(default_factory=lambda: ["deblur", "depth", "motion"])
    """Modules whose weights train; the others are frozen (weights fixed, batch-norm statistics kept). An entry may
    name a part of a module (``depth.out_signed``, ``depth.decoder.4``): only that part's weights train, and the
    module keeps its batch-norm statistics, e.g. to fit a new output layer to features that stay as they are."""
    use_torchvision_cache: bool = True
    """Use ImageNet weights for the paper's backbones when torchvision's cache already holds them (never downloads)."""
    input_size: list | None = None
    """Image size [W, H] the model was trained at; ``wfb train`` records the dataset's, ``wfb reconstruct`` resizes
    photos to this many pixels. None: not recorded (older checkpoints), read as [320, 240]."""

    def __post_init__(self) -> None:
        f_c = self.depth_focal
        if f_c is not None:
            if isinstance(f_c, bool) or not isinstance(f_c, (int, float)) or not 0 < f_c < float("inf"):
                raise WfbError("model.depth_focal must be a focal length in pixels above 0, or null for depth that "
                               f"ignores the camera; got {f_c!r}")
            self.depth_focal = float(f_c)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> "ModelConfig":
        """A config from a mapping (YAML, overrides); scalar values are coerced to their field's type."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known) - {"linear_light"})
        if unknown:
            raise WfbError(f"unknown model config keys: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        if d.get("motion") == "compact":  # the LSTM head's former name, in checkpoints and configs written before
            d = {**d, "motion": "lstm"}
        if "linear_light" in d:  # the averaging choice's former name and type, likewise
            d = {k: v for k, v in d.items() if k != "linear_light"} | {"averaging": "linear" if d["linear_light"] else "srgb"}
        return cls(**{k: coerce(v, known[k].type, f"{where}.{k}") for k, v in d.items()})


def literal_choices(annotation) -> tuple | None:
    """The values of a ``Literal[...]`` field annotation (a string under postponed evaluation), else None."""
    text = annotation if isinstance(annotation, str) else str(annotation)
    if text.startswith("typing."):
        text = text[len("typing."):]
    if not (text.startswith("Literal[") and text.endswith("]")):
        return None
    values = ast.literal_eval("(" + text[len("Literal["):-1] + ",)")
    return tuple(values)


def coerce(value, annotation, where: str):
    """YAML 1.1 reads 1e-4 as a string: convert to the field's declared scalar type, or say what is wrong.

    The one coercion of every config the package reads (model configs, training configs, recipes).
    """
    choices = literal_choices(annotation)
    if choices is not None:
        if isinstance(value, bool) and ("off" if value is False else "on") in choices:
            value = "off" if value is False else "on"  # YAML 1.1 reads a bare off / on as a boolean
        if value not in choices:
            raise WfbError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    kind = {"float": float, "int": int, "bool": bool, "str": str}.get(str(annotation))
    if kind is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (float, int) and isinstance(value, str):
        try:
            number = float(value)
            if kind is int and number != int(number):
                raise ValueError
            return kind(number)
        except ValueError:
            pass
    raise WfbError(f"{where}: expected {kind.__name__}, got {value!r}")


def load_model_config(path: str | Path) -> ModelConfig:
    """A ModelConfig from a YAML or JSON file: a preset name under ``preset`` and/or any field to override."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise WfbError(f"{path}: cannot read the model config ({err})") from None
    if not isinstance(data, dict):
        raise WfbError(f"{path}: a model config must be a mapping of field names to values")
    return model_config_from(data)


def model_config_from(data: dict, where: str = "model") -> ModelConfig:
    """A model config from a mapping of a preset name under ``preset`` (default "compact") and/or any field to
    override: the one preset merge of every config the package reads (model files, training configs, recipes)."""
    if not isinstance(data, dict):
        raise WfbError(f"{where}: expected a mapping of model fields, got {type(data).__name__}")
    data = dict(data)
    base = preset(data.pop("preset", "compact")).to_dict()
    base.update(data)
    return ModelConfig.from_dict(base, where)


PRESETS = {
    "compact": ModelConfig(),
    "paper": ModelConfig(deblur="cnn_l15", depth="two_branch", motion="resnet_lstm", subframes=1, averaging="srgb"),
    "paper-eigen": ModelConfig(deblur="cnn_l15", depth="eigen", motion="resnet_lstm", subframes=1, averaging="srgb"),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise WfbError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig.from_dict(PRESETS[name].to_dict())
