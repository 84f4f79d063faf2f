"""The three modules joined in the self-supervised cycle of the paper's Fig. 5."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from ..errors import WfbError
from ..geometry import pose_from_uv, reblur
from ..losses import cycle_loss, deblur_loss, depth_loss
from .compact import CompactDeblur, CompactDepth, CompactMotion, CompactPathMotion
from .config import ModelConfig
from .efficientnet import EfficientDepth
from .nafnet import NAFNET_BLOCKS, NAFNET_WIDTH, NAFNet
from .paper import CNNL15, EigenCoarseFine, ResNetLSTMMotion, TwoBranchDepth, load_backbone_weights


def build_deblur(cfg: ModelConfig) -> nn.Module:
    options = {"compact": CompactDeblur, "cnn_l15": CNNL15, "nafnet": NAFNet}
    if cfg.deblur not in options:
        raise WfbError(f"unknown deblur module {cfg.deblur!r}; choose one of {', '.join(options)}")
    if cfg.deblur_blocks is not None and cfg.deblur != "nafnet":
        raise WfbError(f"deblur_blocks applies to the nafnet deblur module only, not {cfg.deblur!r}; remove it")
    widths = None if cfg.deblur_widths is None else tuple(cfg.deblur_widths)
    if widths is not None:
        if cfg.deblur == "cnn_l15":
            raise WfbError("deblur_widths applies to the compact deblur module only (and to nafnet's width), not 'cnn_l15'; "
                           "remove it")
        if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise WfbError(f"deblur_widths must be a list of positive channel counts, e.g. [32, 64, 128], not {list(widths)}")
    if cfg.deblur == "nafnet":
        if widths is not None and len(widths) != 1:
            raise WfbError(f"deblur_widths of the nafnet module is its first level's width alone, e.g. [16], not {list(widths)}")
        blocks = tuple(cfg.deblur_blocks) if cfg.deblur_blocks is not None else NAFNET_BLOCKS
        if len(blocks) < 2 or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in blocks):
            raise WfbError(f"deblur_blocks lists the blocks of each encoder level and then the middle, e.g. [1, 1, 1, 2, 1], "
                           f"not {list(blocks)}")
        return NAFNet(widths[0] if widths else NAFNET_WIDTH, blocks[:-1], blocks[-1])
    if widths is None:
        return options[cfg.deblur]()
    return CompactDeblur(widths)


def cached_torchvision_weights(weights) -> Path | None:
    """The local file of a torchvision weights entry if torchvision's cache holds it (nothing is downloaded)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    return path if path.is_file() else None


def _torchvision_weights(name: str):
    """torchvision's ImageNet weights entry ``name`` (imported here: torchvision costs a second to import, and only the
    paper's backbones need it)."""
    import torchvision

    return getattr(torchvision.models, name).IMAGENET1K_V1


def _backbone_file(cfg: ModelConfig, name: str, weights) -> Path | None:
    if name in cfg.backbone_weights:
        return Path(cfg.backbone_weights[name])
    return cached_torchvision_weights(weights) if cfg.use_torchvision_cache else None


def build_depth(cfg: ModelConfig) -> nn.Module:
    options = {"compact": CompactDepth, "two_branch": TwoBranchDepth, "eigen": EigenCoarseFine, "effnet_lite0": EfficientDepth}
    if cfg.depth not in options:
        raise WfbError(f"unknown depth module {cfg.depth!r}; choose one of {', '.join(options)}")
    module = options[cfg.depth](min_depth=cfg.min_depth)
    weights = _backbone_file(cfg, "vgg16", _torchvision_weights("VGG16_Weights")) if cfg.depth == "two_branch" else None
    if weights is not None:
        # torchvision's VGG-16 keys are "features.<i>..."; branch (b) holds the first 14 of those children.
        load_backbone_weights(_Prefixed(module.branch_b, "features."), weights)
    return module


def build_motion(cfg: ModelConfig) -> nn.Module:
    options = {"lstm": CompactMotion, "resnet_lstm": ResNetLSTMMotion, "paths": CompactPathMotion}
    if cfg.motion not in options:
        raise WfbError(f"unknown motion module {cfg.motion!r}; choose one of {', '.join(options)}")
    module = options[cfg.motion](n=cfg.n)
    weights = (_backbone_file(cfg, "resnet152", _torchvision_weights("ResNet152_Weights"))
               if cfg.motion == "resnet_lstm" else None)
    if weights is not None:
        load_backbone_weights(module.backbone, weights)
    return module


class _Prefixed(nn.Module):
    """Expose a module's parameters under a key prefix, to load a larger network's state dict into a part of it."""

    def __init__(self, inner: nn.Module, prefix: str):
        super().__init__()
        self.inner = inner
        self.prefix = prefix

    def state_dict(self, *args, **kwargs):
        return {self.prefix + k: v for k, v in self.inner.state_dict().items()}

    def load_state_dict(self, state, strict: bool = True):
        return self.inner.load_state_dict({k[len(self.prefix):]: v for k, v in state.items()}, strict=strict)


class WorldFromBlur(nn.Module):
    """Blurred image -> deblurred reference frame, metric depth, 2n poses, and the re-blurred image.

    ``forward(blurred, K)`` runs the cycle: deblur, estimate depth and motion from the deblurred frame, warp it to
    every instant and average (the paper's B-hat). Stage-1 training calls the modules directly (``deblur``,
    ``depth``, ``motion``) with clean inputs.

    In evaluation mode the depth it returns is the mean of the depth module's map of the frame and the mirrored map
    of the mirrored frame (:attr:`depth_flip`; one more pass of the depth module): the two err differently and their
    mean is closer to the truth on every set measured. The motion is solved, re-blurred and refined with the single
    pass (``motion_depth``): refinement with the mean loses real rotation (docs/models.md, "Averaging over mirror
    images"). Training (train mode) makes one pass, and the two are the same tensor.
    """

    depth_flip: bool = True
    """In evaluation mode, return the mean of the frame's depth and the mirrored depth of its mirror image."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.deblur = build_deblur(cfg)
        self.depth = build_depth(cfg)
        self.motion = build_motion(cfg)
        unknown = sorted({str(t) for t in cfg.train if str(t).split(".")[0] not in ("deblur", "depth", "motion")})
        if unknown:
            raise WfbError(f"unknown module(s) in train: {', '.join(unknown)}; choose from deblur, depth, motion, or "
                           "a part of one such as depth.out_signed")
        self.requires_grad_(False)
        for entry in cfg.train:
            try:
                part = self.get_submodule(str(entry))
            except AttributeError:
                module = str(entry).split(".")[0]
                parts = ", ".join(n for n, _ in getattr(self, module).named_children())
                raise WfbError(f"train: {entry} is not a part of this model's {module} module (its parts: {parts})"
                               ) from None
            part.requires_grad_(True)

    def train(self, mode: bool = True) -> "WorldFromBlur":
        """Train mode for the modules that train whole; frozen modules, and modules of which ``model.train`` names
        only parts (e.g. ``depth.out_signed``), stay in eval mode (fixed batch-norm statistics)."""
        super().train(mode)
        for name in ("deblur", "depth", "motion"):
            if name not in self.cfg.train:
                getattr(self, name).eval()
        return self

    def reblur(self, sharp: torch.Tensor, depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor, K: torch.Tensor):
        """Re-blur a sharp frame with a depth map and pose parameters; returns (blurred, valid).

        Always in float32, also under bf16 autocast: pixel coordinates of a few hundred need more than bf16's
        8-bit mantissa (a 1-2 pixel error at x = 300).
        """
        with torch.autocast(sharp.device.type, enabled=False):
            return reblur(sharp.float(), depth.float(), pose_from_uv(u.float(), v.float()), K.float(),
                          subframes=self.cfg.subframes, averaging=self.cfg.averaging,
                          iterations=self.cfg.warp_iterations, return_valid=True, validate=False)

    def metric_depth(self, image: torch.Tensor, K: torch.Tensor | None = None, module: nn.Module | None = None):
        """Metric depth (B, 1, H, W) of a sharp image (B, 3, H, W) with intrinsics ``K`` (B, 3, 3) of that size.

        The depth module's output, times fx / ``cfg.depth_focal`` when the model has a canonical focal length (then K
        is required); ``module`` is the depth module to run (default ``self.depth``; training passes its wrapped one).
        """
        depth = (self.depth if module is None else module)(image)
        f_c = self.cfg.depth_focal
        if f_c is None:
            return depth
        if K is None:
            raise WfbError("this model's depth needs the camera's intrinsics K (model.depth_focal is set)")
        return depth * (K[:, 0, 0].to(depth.dtype) / f_c).view(-1, 1, 1, 1)

    def output_depth(self, image: torch.Tensor, K: torch.Tensor | None = None,
                     single: torch.Tensor | None = None) -> torch.Tensor:
        """The depth returned for a sharp image (B, 3, H, W): in evaluation mode with :attr:`depth_flip`, the mean of
        :meth:`metric_depth` of the image and the mirrored depth of its mirror image; else the single pass (``single``
        when it is given, already computed)."""
        single = self.metric_depth(image, K) if single is None else single
        if not self.depth_flip or self.training:
            return single
        return 0.5 * (single + self.metric_depth(image.flip(-1), K).flip(-1))

    def forward(self, blurred: torch.Tensor, K: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
        """Run the cycle.

        Args:
            blurred: (B, 3, H, W) sRGB in [0, 1].
            K: (B, 3, 3) intrinsics of this image size.
            reference: optional clean reference frame for the motion module (stage 1); the deblurred one otherwise.

        Returns:
            :meth:`predict`'s dict, and ``poses`` (B, 2n, 4, 4), ``reblurred`` (B, 3, H, W) and ``valid``
            (B, 1, H, W), where every instant of the re-blur had a source pixel.
        """
        out = self.predict(blurred, K, reference)
        reblurred, valid = self.reblur(out["deblurred"], out["motion_depth"], out["u"], out["v"], K)
        return {**out, "poses": pose_from_uv(out["u"], out["v"]), "reblurred": reblurred, "valid": valid}

    def predict(self, blurred: torch.Tensor, K: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> dict:
        """The three networks alone (no re-blur): ``deblurred`` (B, 3, H, W), ``depth`` (B, 1, H, W) metres (the
        mirror-image mean in evaluation mode, see :attr:`depth_flip`), ``motion_depth`` (B, 1, H, W), the single
        pass that the motion is solved with and that refinement and the re-blur use (``depth`` itself in train mode or
        without the mean), and the motion head's :class:`~worldfromblur.models.motion.MotionOutput` fields: at least
        ``u`` and ``v`` (B, 2n, 3), read from the blurred image against the deblurred (or a given) frame.

        The per-pixel path head (``motion: paths``) solves its poses from its paths, the depth and ``K`` (required
        then) and adds ``displacement``, ``paths`` (B, 2n, 2, H, W), ``log_scale`` (B, 1, H, W) and ``degenerate``
        (B, 2n), the poses the scene does not determine (see :mod:`worldfromblur.pose_solve`).
        """
        deblurred = self.deblur(blurred)
        single = self.metric_depth(deblurred, K)
        depth = self.output_depth(deblurred, K, single)
        motion = self.motion(blurred, deblurred if reference is None else reference)
        return {"deblurred": deblurred, "depth": depth, "motion_depth": single,
                **self.motion.estimate(motion, single, K).as_dict()}

    def stage_modules(self, stage: str) -> dict[str, str | None]:
        """What a training stage calls, by the name :meth:`stage_loss` looks it up under, and the attribute it is
        (None: the whole model): ``deblur``, ``depth`` or ``motion`` (stage 1, one module apart), ``supervised``
        (stage 1 for every module that trains, side by side) or ``cycle`` (stage 2, the whole cycle)."""
        if stage == "cycle":
            return {"cycle": None}
        if stage == "supervised":
            return {n: n for n in ("deblur", "depth", "motion") if any(p.requires_grad for p in getattr(self, n).parameters())}
        if stage in ("deblur", "depth", "motion"):
            return {stage: stage}
        raise WfbError(f"unknown stage {stage!r}; choose deblur, depth, motion, supervised or cycle")

    def _stage_reference(self, batch: dict, out: dict, reference: str) -> torch.Tensor:
        """The frame stage 1's depth and motion modules read (``loss.reference``): the clean sharp frame, or the
        deblurred one, taken from this step's deblurring output when that module trains and otherwise made by the
        frozen module in evaluation mode (its batch-norm statistics stay as they are); never with gradient."""
        if reference == "sharp":
            return batch["sharp"]
        if reference != "deblurred":
            raise WfbError(f"loss.reference must be sharp or deblurred, got {reference!r}")
        if "deblurred" in out:
            return out["deblurred"].detach()
        was_training = self.deblur.training
        self.deblur.eval()
        try:
            with torch.no_grad():
                return self.deblur(batch["blurred"])
        finally:
            self.deblur.train(was_training)

    def stage_loss(self, stage: str, batch: dict, loss, modules: dict | None = None) -> tuple:
        """The training loss of one stage on a batch: ``(total, details, outputs)`` (see :mod:`worldfromblur.losses`).

        Stage 1 (``deblur``, ``depth``, ``motion``) trains a module apart on clean inputs (depth and motion read the
        clean sharp frame, or with ``loss.reference=deblurred`` the deblurred one, as at inference); ``supervised``
        is stage 1 for the modules that train, at once, each on its own inputs and loss, summed (their parameters are
        disjoint, so the sum trains each as if alone; Adam makes their scales moot); ``cycle`` (stage 2) runs the whole
        cycle.

        Args:
            loss: the loss options (``depth``, ``reversal``, ``alpha``, ``reference``, ``deblur_edges``; a
                :class:`~worldfromblur.losses.LossConfig`).
            modules: the callables to run, by name (``deblur``, ``depth``, ``motion`` or ``cycle``): the trainer passes
                this model's modules in their distributed wrappers; default, this model's own modules that train.
        """
        if modules is None:
            modules = {k: self if a is None else getattr(self, a) for k, a in self.stage_modules(stage).items()}
        out, total, details = {}, 0.0, {}

        def runs(name: str) -> bool:
            return stage == name or (stage == "supervised" and name in modules)

        if runs("deblur"):
            out["deblurred"] = modules["deblur"](batch["blurred"])
            L, d = deblur_loss(out["deblurred"], batch["sharp"], batch.get("valid_blur"),
                               loss.deblur_edges)
            total, details = total + L, {**details, **d}
        if runs("depth") or runs("motion"):
            reference = self._stage_reference(batch, out, loss.reference)
        if runs("depth"):
            out["depth"] = self.metric_depth(reference, batch.get("K"), modules["depth"])
            L, d = depth_loss(out["depth"], batch["depth"], batch["valid_depth"], loss.depth)
            total, details = total + L, {**details, **d}
        if runs("motion"):
            motion = modules["motion"](batch["blurred"], reference)
            out.update(motion.as_dict())
            L, d = self.motion.loss(motion, batch, loss.reversal)
            total, details = total + L, {**details, **d}
        if stage == "cycle":
            out = modules["cycle"](batch["blurred"], batch["K"])
            total, details = cycle_loss(out, batch, loss.alpha, loss.reversal)
        return total, details, out

