"""From one blurred photo to a 3D scene: resize, run the networks, refine, and bring the results to the photo's size
(the files are written by ``outputs``).

Sizes. A model works at the resolution it was trained at (``ModelConfig.input_size``, W0 x H0). For the networks a
photo is resized to about the same number of pixels *with its own aspect ratio kept* (each side a multiple of 8), not
cropped or padded: the networks are fully convolutional, nothing of the photo is lost, and a border of padding would
not be blurred like the rest. K is scaled with the image (see :func:`worldfromblur.geometry.scale_intrinsics`).
Photos more than 3:1 wide or tall are refused. Motion, depth and refinement work at this *working size*; the
deblurred frame, depth, re-blurred image and point cloud then come back at the *output size*, the photo's own
(reduced to ``max_pixels`` when larger), as :mod:`worldfromblur.reconstruct.fullres` describes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WfbError
from ..geometry import pose_from_uv, scale_intrinsics
from ..imaging import Averaging, psnr
from ..models import WorldFromBlur
from ..viz import to_u8
from .deconvolve import deconvolve
from .fullres import DEFAULT_MAX_PIXELS, DEFAULT_TILE, deblur_full, output_size, resize, upsample_depth
from .photo import Photo, intrinsics_for
from .refine import DEFAULT_STEPS, ROBUST, ROLL_PRIOR, reblur_uv, refine, rotation_change_deg

DEFAULT_INPUT_SIZE = (320, 240)
REFERENCE_SCALE = 3.0
"""Refinement fits the motion with a sharp frame that the deblurring network makes at this many times the working
size, brought back to the working size: the network sharpens the photo more there, and a sharper frame leaves the
fit less room to explain the blur by a smaller motion. Measured on real blur (docs/reconstruct.md, "Refinement"):
the median rotation-axis error went from 23.8 to 12.8 degrees on a hand-held 240 fps video no pool contains and
from 29.4 to 13.2 on the 7-Scenes sample; at 1.5 and 2 times it helped less or not at all. Long blur lowers it
(:data:`MAX_REFERENCE_BLUR_PX`)."""
DEPTH_FROM_REFERENCE = True
"""Where refinement's reference frame is made at a larger scale, the depth written is read from it rather than from
the networks' working-size frame (the motion keeps the networks' single pass; see ``WorldFromBlur.depth_flip``):
that frame is sharper, and depth from it is closer to the truth. Measured on blur rendered at 480 x 360 (working
size 160 x 120; docs/reconstruct.md, "Full resolution"): Abs Rel 0.312 -> 0.304 and delta < 1.25 0.397 -> 0.459
on 60 procedural rooms no pool contains, 0.212 -> 0.201 and 0.585 -> 0.620 in the held-out ICL-NUIM room, 0.141 ->
0.129 and 0.790 -> 0.828 on the 7-Scenes test frames (``python -m experiments.reference_depth``)."""
MIN_REFERENCE_SCALE = 2.5
"""A photo smaller than this many times the working size keeps the networks' own deblurred frame for refinement."""
MAX_REFERENCE_BLUR_PX = 20.0
"""Long blur lowers the reference frame's scale: it is made at most at the size where the blur the networks see
(their rotation from the exposure's first to its last instant, in pixels at the focal length) is this long, half the
longest blur of the training stream (``max_blur_px`` 40; 71 % of its exposures are shorter). Beyond what it was
trained on the network removes little, and a frame still blurred is re-blurred into the photo best by too small a
motion (docs/reconstruct.md, "Refinement")."""
MIN_BLUR_LIMITED_SCALE = 1.25
"""Where the blur limit brings the reference frame's scale below this, refinement starts from the networks' own
frame at the working size instead."""
PRECISIONS = ("auto", "fp32", "bf16")
"""Number formats of the deblurring network at the photo's size (``wfb reconstruct --precision``): ``auto`` is bf16
where the hardware computes it natively (a CPU with AVX-512 BF16 or AMX, a CUDA GPU with bf16), fp32 elsewhere. On
real 1280 x 720 GoPro blur bf16 changes the deblurred frame's PSNR by -0.003 dB on average and halves the network's
time on a 2-core CPU (docs/benchmarks.md); the working-size networks, refinement and geometry stay in fp32."""
CHECK_PIXELS = 1 << 16
"""The networks' trajectory's re-blur PSNR at the output size (the summary's ``reblur_psnr_network_db``, beside the
refined one's) is measured on at least this many output pixels rather than on all of them (:func:`check_pixels`, with
the re-blur's exact values there): at 1 MP that saves two of the command's seconds, and the estimate is within a few
hundredths of a dB of the figure over every pixel (tested)."""
MAX_ASPECT = 3.0
FPS = 30.0
"""Frame rate of the instants of the exposure: that of the training data (the paper's 30 fps video)."""


class ReconstructionError(WfbError):
    """The model's output for a photo is unusable (for example not finite); the message names the photo."""


def working_size(width: int, height: int, input_size=DEFAULT_INPUT_SIZE) -> tuple[int, int]:
    """The size a photo is resized to: about ``W0 * H0`` pixels, the photo's aspect ratio, sides multiples of 8."""
    aspect = width / height
    if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
        raise WfbError(f"aspect ratio {width}x{height} is more than {MAX_ASPECT:g}:1; crop the photo first")
    area = float(input_size[0] * input_size[1])
    h = math.sqrt(area / aspect)
    w = aspect * h
    return max(16, int(round(w / 8)) * 8), max(16, int(round(h / 8)) * 8)


def resize_photo(photo: Photo, K: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, h, w) image and (1, 3, 3) K at ``size`` (anti-aliased bilinear, pixel centres as in ``scale_intrinsics``)."""
    W, H = photo.size
    w, h = size
    x = torch.from_numpy(photo.rgb).permute(2, 0, 1)[None].float()
    if (w, h) != (W, H):
        x = resize(x, size).clamp(0, 1)
    Ks = scale_intrinsics(torch.as_tensor(K, dtype=torch.float64), w / W, h / H).float()[None]
    return x, Ks


@dataclass
class Views:
    """One reconstruction's images at one size (tensors on the CPU, batch of one)."""

    blurred: torch.Tensor  # (1, 3, h, w) the input photo at this size
    K: torch.Tensor  # (1, 3, 3) intrinsics at this size
    deblurred: torch.Tensor  # (1, 3, h, w)
    depth: torch.Tensor  # (1, 1, h, w) metres
    reblurred: torch.Tensor  # (1, 3, h, w) the final output re-blurred (refinement's exposure model)
    # the sharp frame seen from each of the 2n + 1 instants, (h, w, 3) uint8, where the re-blur kept them (else None:
    # outputs.projected_frames warps them when they are written)
    frames: list[np.ndarray] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.blurred.shape[-1], self.blurred.shape[-2]


@dataclass
class Reconstruction:
    """Everything a photo's reconstruction holds: the trajectory, and the images at the output size (``out``) and at
    the networks' working size (``work``); the two are the same object when the sizes are equal."""

    photo: Photo
    K_source: str
    out: Views
    work: Views
    u: torch.Tensor  # (1, 2n, 3) radians
    v: torch.Tensor  # (1, 2n, 3) metres
    psnr_network: float  # re-blur PSNR at the output size of the networks' trajectory (on the grid of CHECK_PIXELS)
    psnr: float  # re-blur PSNR at the output size of the final (refined) output
    refine_steps: int = 0  # the refinement's step budget (0: not refined)
    refine_options: dict = field(default_factory=dict)  # what refinement optimised and did (see Reconstructor)
    averaging: Averaging = "linear"  # the model's exposure model: how it averages the instants
    deblur_scales: list = field(default_factory=lambda: [1])  # see fullres.deblur_full
    deconvolved: bool = False  # the output's sharp frame was deconvolved with the trajectory (see .deconvolve)
    precision: str = "fp32"  # number format of the deblurring network at the photo's size (see PRECISIONS)
    degenerate: list = field(default_factory=list)  # per instant, poses the scene does not determine (path head only)
    depth_source: str = "networks"  # the frame the depth written was read from: "networks" or "reference" (larger)
    timings: dict = field(default_factory=dict)

    @property
    def poses(self) -> torch.Tensor:
        return pose_from_uv(self.u, self.v)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions natively (faster than fp32, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:  # private helpers of torch.cpu; a torch without them gets fp32
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except AttributeError:
            return False
    return False


def check_pixels(width: int, height: int) -> torch.Tensor | None:
    """The output pixels :data:`CHECK_PIXELS` stands for, (h, w, 2) integer (x, y); None (every pixel) up to 4 times
    that many.

    One pixel at a random place in every s x s cell (s the largest step that keeps CHECK_PIXELS cells; the same
    places every run): a fixed place in every cell would see only one phase of whatever repeats every few pixels
    (a Bayer mosaic's demosaicing, an upsampled image), which biases a PSNR of 40 dB or more by a tenth of a dB.
    """
    s = math.isqrt(width * height // CHECK_PIXELS)
    if s < 2:
        return None
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.arange(0, height, s), torch.arange(0, width, s)
    y = (ys[:, None] + torch.randint(0, s, (len(ys), len(xs)), generator=g)).clamp(max=height - 1)
    x = (xs[None, :] + torch.randint(0, s, (len(ys), len(xs)), generator=g)).clamp(max=width - 1)
    return torch.stack([x, y], dim=-1)


def blur_length_px(u: torch.Tensor, v: torch.Tensor, K: torch.Tensor) -> float:
    """How far a (1, 2n, 3) trajectory's rotation moves the image over the exposure: the angle between its first and
    last instants' rotations times the focal length of ``K`` (pixels; the translation's share is left out)."""
    u, v = u.double(), v.double()  # float32's arccos near 1 would blur a short blur's length
    angle = rotation_change_deg(u[:, :1], v[:, :1], u[:, -1:], v[:, -1:])
    return math.radians(angle) * float(K.reshape(-1, 3, 3)[0, 0, 0])


def at_pixels(image: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w): the values at :func:`check_pixels` (the image itself for None)."""
    return image if pixels is None else image[..., pixels[..., 1], pixels[..., 0]]


class Reconstructor:
    """A loaded model and the options of a run; call it on a :class:`Photo`."""

    def __init__(self, model: WorldFromBlur, device: str = "cpu", refine_steps: int = DEFAULT_STEPS,
                 refine_sharp: bool = False,
                 refine_motion: str = "smooth", refine_translation: bool = False, refine_robust: float | None = None,
                 refine_roll_prior: float | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, tile: int = DEFAULT_TILE, deconvolve: bool = False,
                 precision: str = "auto"):
        if precision not in PRECISIONS:
            raise WfbError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = model.to(device).eval()
        # Channels-last convolutions: the deblurring network at a photo's size runs 1.3 times faster on a CPU
        # (docs/benchmarks.md), with the same result to 1e-6.
        self.model.deblur.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.precision = ("bf16" if native_bf16(self.device) else "fp32") if precision == "auto" else precision
        self.refine_steps = refine_steps
        self.refine_sharp = refine_sharp
        self.refine_motion = refine_motion
        self.refine_translation = refine_translation
        self.refine_robust = ROBUST if refine_robust is None else float(refine_robust)
        self.refine_roll_prior = ROLL_PRIOR if refine_roll_prior is None else float(refine_roll_prior)
        self.max_pixels = max_pixels
        self.tile = tile
        self.deconvolve = deconvolve
        size = model.cfg.input_size
        self.input_size = tuple(size) if size else DEFAULT_INPUT_SIZE
        self.averaging = model.cfg.averaging

    def _refine_options(self, r) -> dict:
        """What refinement optimised, how many iterations (or Adam steps) it ran, how far it moved the rotation
        (degrees, the largest over the instants) and, when it kept the networks' trajectory, why."""
        return {"motion": self.refine_motion, "translation": self.refine_translation, "sharp": self.refine_sharp,
                "robust": None if self.refine_sharp else self.refine_robust,
                "roll_prior": None if self.refine_sharp else self.refine_roll_prior, "iterations": r.steps,
                "moved_deg": round(r.moved_deg, 4), "fallback": r.fallback}

    @torch.no_grad()
    def networks(self, x: torch.Tensor, K: torch.Tensor) -> dict:
        """The three networks on a (1, 3, h, w) image at the working size: deblurred, depth (the output's),
        motion_depth (the one the motion is solved and refined with; see ``WorldFromBlur.depth_flip``), u, v (float,
        CPU)."""
        out = self.model.predict(x.to(self.device), K=K.to(self.device))
        return {k: out[k].float().cpu() for k in ("deblurred", "depth", "motion_depth", "u", "v")} | (
            {"degenerate": out["degenerate"].cpu()} if "degenerate" in out else {})

    def __call__(self, photo: Photo, intrinsics: list[float] | None = None) -> Reconstruction:
        timings = {}
        t = time.perf_counter()
        K_full, source = intrinsics_for(photo, intrinsics)
        x, K = resize_photo(photo, K_full, working_size(*photo.size, self.input_size))
        out_size = output_size(*photo.size, self.max_pixels)
        timings["prepare_s"] = time.perf_counter() - t

        t = time.perf_counter()
        net = self.networks(x, K)
        degenerate = net.pop("degenerate", None)
        if not all(torch.isfinite(v).all() for v in net.values()):
            raise ReconstructionError(f"{photo.path}: the model's output is not finite for this photo; "
                                      "check the image's values and the checkpoint")
        timings["networks_s"] = time.perf_counter() - t

        t = time.perf_counter()
        net["reference"] = self.reference(photo, K_full, x.shape[-1], x.shape[-2], net["deblurred"],
                                          blur_px=blur_length_px(net["u"], net["v"], K))
        depth_source = "networks"
        if DEPTH_FROM_REFERENCE and net["reference"] is not net["deblurred"]:  # the depth written: the sharper frame's
            with torch.no_grad():
                depth = self.model.output_depth(net["reference"].to(self.device), K.to(self.device))
            net["depth"] = depth.float().cpu()
            depth_source = "reference"
        with torch.enable_grad():  # on the model's device; the results come back to the CPU
            inputs = [t_.to(self.device) for t_ in (x, net["reference"], net["motion_depth"], net["u"], net["v"], K)]
            r = refine(*inputs, self.refine_steps,
                       averaging=self.averaging, optimize_sharp=self.refine_sharp, motion=self.refine_motion,
                       translation=self.refine_translation, robust=self.refine_robust,
                       roll_prior=self.refine_roll_prior)
            r.u, r.v, r.sharp, r.reblurred = (t_.cpu() for t_ in (r.u, r.v, r.sharp, r.reblurred))
        timings["refine_s"] = time.perf_counter() - t
        refined = self.refine_steps > 0
        work = Views(blurred=x, K=K, deblurred=r.sharp, depth=net["depth"], reblurred=r.reblurred)
        rec = Reconstruction(photo=photo, K_source=source, out=work, work=work, u=r.u, v=r.v,
                             psnr_network=r.psnr_before, psnr=r.psnr_after, refine_steps=self.refine_steps,
                             refine_options=self._refine_options(r) if refined else {},
                             averaging=self.averaging, timings=timings, precision=self.precision,
                             degenerate=[] if degenerate is None else degenerate[0].tolist(), depth_source=depth_source)
        if out_size != work.size:
            t = time.perf_counter()
            self._upscale(rec, photo, K_full, out_size, net)
            timings["full_resolution_s"] = time.perf_counter() - t
        if self.deconvolve:
            t = time.perf_counter()
            self._deconvolve(rec)
            timings["deconvolve_s"] = time.perf_counter() - t
        return rec

    def deblur(self, x: torch.Tensor) -> torch.Tensor:
        """The deblurring network on a (1, 3, H, W) image of any size, in channels-last memory and in
        :attr:`precision`; the result in fp32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.model.deblur(x.contiguous(memory_format=torch.channels_last))
        return y.float().contiguous()

    def _reblur_with_frames(self, sharp, depth, u, v, K) -> tuple[torch.Tensor, list[np.ndarray]]:
        """The re-blur of ``sharp`` with the trajectory (u, v), and the 2n + 1 frame instants it warped on the way,
        kept as 8-bit (h, w, 3) images in time order (for ``frames/``, without warping them again)."""
        frames = {}
        reblurred = reblur_uv(sharp, depth, u, v, K, self.averaging,
                              on_frame=lambda k, image: frames.__setitem__(k, to_u8(image)))
        return reblurred, [frames[k] for k in sorted(frames)]

    @torch.no_grad()
    def reference(self, photo: Photo, K_full: np.ndarray, w: int, h: int, deblurred: torch.Tensor,
                  blur_px: float = 0.0) -> torch.Tensor:
        """The sharp frame refinement starts from, (1, 3, h, w): the deblurring network's output at
        :data:`REFERENCE_SCALE` times the working size (at most the photo's, and at most
        ``MAX_REFERENCE_BLUR_PX / blur_px`` for the networks' blur length ``blur_px`` at the working size; sides
        multiples of 8), resized to the working size; the networks' own ``deblurred`` when refinement is off, the photo
        is smaller than :data:`MIN_REFERENCE_SCALE` times the working size, or the blur is so long that the scale
        would be under :data:`MIN_BLUR_LIMITED_SCALE`."""
        W, H = photo.size
        scale = min(REFERENCE_SCALE, W / w, H / h)
        if self.refine_steps <= 0 or scale < MIN_REFERENCE_SCALE:
            return deblurred
        if blur_px > 0:
            scale = min(scale, MAX_REFERENCE_BLUR_PX / blur_px)
        if scale < MIN_BLUR_LIMITED_SCALE:
            return deblurred
        size = (int(w * scale) // 8 * 8, int(h * scale) // 8 * 8)
        big, _ = resize_photo(photo, K_full, size)
        sharp = self.deblur(big.to(self.device)).cpu().clamp(0, 1)
        return resize(sharp, (w, h)).clamp(0, 1)

    def _deconvolve(self, rec: Reconstruction) -> None:
        """Replace the output's sharp frame by its deconvolution with the trajectory (see :mod:`.deconvolve`)."""
        view = rec.out
        inputs = [t_.to(self.device) for t_ in (view.blurred, view.deblurred, view.depth, rec.u, rec.v, view.K)]
        view.deblurred = deconvolve(*inputs, tile=self.tile).float().cpu()
        with torch.no_grad():
            view.reblurred, view.frames = self._reblur_with_frames(view.deblurred, view.depth, rec.u, rec.v, view.K)
        rec.psnr, rec.deconvolved = psnr(view.reblurred, view.blurred), True

    def _upscale(self, rec: Reconstruction, photo: Photo, K_full: np.ndarray, size: tuple[int, int], net: dict) -> None:
        """Bring the deblurred frame, depth and re-blur of ``rec`` to ``size`` (see :mod:`.fullres`)."""
        blurred, K = resize_photo(photo, K_full, size)
        deblurred, rec.deblur_scales = deblur_full(self.deblur, blurred.to(self.device),
                                                   rec.work.size[0] * rec.work.size[1], self.tile)
        deblurred = deblurred.float().cpu()
        if self.refine_sharp and rec.refine_steps:  # carry refinement's change of the sharp frame over
            change = F.interpolate(rec.work.deblurred - net["reference"], size=deblurred.shape[-2:], mode="bilinear",
                                   align_corners=False)
            deblurred = (deblurred + change).clamp(0, 1)
        depth = upsample_depth(net["depth"], deblurred)
        with torch.no_grad():
            reblurred, frames = self._reblur_with_frames(deblurred, depth, rec.u, rec.v, K)
            rec.psnr = psnr(reblurred, blurred)
            if rec.refine_steps:
                px = check_pixels(*size)
                rec.psnr_network = psnr(reblur_uv(deblurred, depth, net["u"], net["v"], K, self.averaging, pixels=px),
                                        at_pixels(blurred, px))
            else:
                rec.psnr_network = rec.psnr
        rec.out = Views(blurred=blurred, K=K, deblurred=deblurred, depth=depth, reblurred=reblurred, frames=frames)
