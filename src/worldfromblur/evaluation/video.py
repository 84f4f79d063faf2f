"""Rotation axes on real hand-held blur: high-frame-rate video averaged into blurred photos, the truth measured from
the video's own sharp frames.

A folder of consecutive frames of a hand-held high-frame-rate video (240 fps, say) is cut into windows of
:data:`WINDOW_FRAMES` frames, one every :data:`WINDOW_EVERY`; each window's frames averaged in linear light are one
real motion-blurred photo (a 13-frame window of 240 fps video is a 54 ms exposure). The camera's rotation over the
window is measured from its first and last sharp frames: the rotation R whose homography ``K R K^-1`` aligns them
best (:func:`measure_rotation`), with the ``K`` that ``wfb reconstruct`` assumes for a photo without EXIF, so that
truth and reconstruction describe the same pixel motion. A reconstruction is scored by the angle between the
measured and the reconstructed rotation axes, up to sign (a blurred photo is the same whichever way time runs;
random axes score 57 degrees, median).

The truth is only as good as a rotation explains the two frames. Each window's **camera share** says how much of the
mean grey difference between its first and last frames the measured rotation removes (``1 - after / before``): where
it is low, the frames differ mostly by something no camera rotation explains (a person moving close to the lens, the
parallax of a near floor), and so does the blur. The judged figure is therefore the median axis error over the
windows whose camera share is at least :data:`CAMERA_SHARE` (over all windows when none is).

Used by the ship gate (``evaluate.videos`` of a recipe, :func:`evaluate_video`) and by
``experiments/video_rotation.py``, which prints every window.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..errors import WfbError
from ..geometry import pose_from_uv, scale_intrinsics
from ..imaging import blur_frames
from ..reconstruct import Reconstructor
from ..reconstruct.fullres import resize
from ..reconstruct.photo import Photo, intrinsics_for
from ..reconstruct.pipeline import working_size

WINDOW_FRAMES = 13
"""Frames averaged into one blurred photo."""
WINDOW_EVERY = 10
"""Frames between the centres of consecutive windows."""
MIN_ROTATION_DEG = 0.3
"""Windows whose measured rotation is smaller are left out: the axis of no motion means nothing."""
CAMERA_SHARE = 0.5
"""The judged windows: those where the measured rotation removes at least this share of the frames' difference."""
VIDEO_TOLERANCE = 0.10
"""A model is worse on a video when its judged median axis error exceeds the shipped model's by more than this
share."""
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def frame_paths(folder: Path, least: int = WINDOW_FRAMES, verify: bool = False) -> list[Path]:
    """The sorted frames of a video folder; a clear error when it has fewer than ``least`` or, with ``verify``, when
    a frame is not a readable image of the first one's size (headers only: fast)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WfbError(f"{folder}: not a folder of video frames; give a folder of consecutive .png or .jpg frames")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if len(frames) < least:
        raise WfbError(f"{folder}: {len(frames)} frames, fewer than one blurred window needs ({least}); "
                       "give a folder of consecutive high-frame-rate video frames")
    if verify:
        size = None
        for p in frames:
            try:
                with Image.open(p) as im:
                    this = im.size
            except (OSError, ValueError) as err:
                raise WfbError(f"{p}: not a readable image ({err}); remove it or replace it") from None
            size = size or this
            if this != size:
                raise WfbError(f"{p}: {this[0]} x {this[1]} pixels, unlike the first frame's {size[0]} x {size[1]}; "
                               "a video's frames share one size")
    return frames


def read_frame(path: Path) -> torch.Tensor:
    """(3, H, W) one frame, sRGB in [0, 1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def video_windows(frames: list[Path], every: int, lengths: list[int]) -> list[tuple[int, int]]:
    """(centre index, frames) of the blur windows that fit in the sequence, lengths taken in turn."""
    centres = range(max(lengths) // 2, len(frames) - max(lengths) // 2, every)
    return [(c, lengths[k % len(lengths)]) for k, c in enumerate(centres)]


def axis_angle(R: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit axis and angle (radians) of a rotation matrix."""
    angle = math.acos(max(-1.0, min(1.0, (np.trace(R) - 1) / 2)))
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    n = np.linalg.norm(w)
    return (w / n if n > 1e-12 else np.array([0.0, 0.0, 1.0])), angle


def axis_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two axes up to sign, degrees (0 to 90)."""
    c = abs(float(np.dot(a, b)))
    return math.degrees(math.acos(min(1.0, c)))


def rotation_matrix(u: np.ndarray) -> np.ndarray:
    """The rotation matrix of a rotation vector (radians)."""
    return pose_from_uv(torch.as_tensor(u, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))[:3, :3].numpy()


def reconstructed_rotation(rec) -> np.ndarray:
    """The rotation from the exposure's first to its last instant of a reconstruction, in the reference camera's
    axes."""
    T = pose_from_uv(rec.u, rec.v)[0].double().numpy()  # reference -> instant
    return T[0, :3, :3] @ T[-1, :3, :3].T


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def warp_by_rotation(img: torch.Tensor, u: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``img`` (1, C, H, W) seen from the reference camera: each reference pixel p samples ``img`` at
    ``K R(u) K^-1 p``; and the mask of pixels that land inside."""
    _, _, H, W = img.shape
    R = pose_from_uv(u, torch.zeros_like(u))[:3, :3]
    Hm = K @ R @ torch.linalg.inv(K)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=img.dtype), torch.arange(W, dtype=img.dtype), indexing="ij")
    q = Hm @ torch.stack([xs.flatten(), ys.flatten(), torch.ones(H * W, dtype=img.dtype)])
    x, y = q[0] / q[2], q[1] / q[2]
    grid = torch.stack([(x + 0.5) / W * 2 - 1, (y + 0.5) / H * 2 - 1], -1).reshape(1, H, W, 2)
    inside = ((grid.abs() <= 1).all(-1)).to(img.dtype)[:, None]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False), inside


def measure_rotation(first: torch.Tensor, last: torch.Tensor, K: torch.Tensor, width: int = 320,
                     iterations: int = 40) -> tuple[np.ndarray, float, float]:
    """The rotation (rotation vector, radians, reference camera = ``first``) that aligns ``last`` to ``first``
    (both (1, 3, H, W) at the size ``K`` is for), and the mean absolute grey error before and after, in 8-bit
    levels: Levenberg-Marquardt on Huber-weighted grey residuals, at 1/4, 1/2 and all of ``width``, each level until a
    step changes no coordinate by more than 1e-7 radians or ``iterations`` steps."""
    H, W = first.shape[-2:]
    u = torch.zeros(3, dtype=torch.float64)
    for w in (width // 4, width // 2, width):
        size = (w, round(H * w / W))
        a, b = (_grey(resize(x, size)).double() for x in (first, last))
        Ks = scale_intrinsics(K.double(), size[0] / W, size[1] / H)
        _, inside = warp_by_rotation(b, u, Ks)

        def residual(v: torch.Tensor, a=a, b=b, Ks=Ks, inside=inside) -> torch.Tensor:
            return ((warp_by_rotation(b, v, Ks)[0] - a) * inside).flatten()

        def cost(r: torch.Tensor) -> float:
            return float(torch.where(r.abs() < 0.02, 0.5 * r**2, 0.02 * (r.abs() - 0.01)).sum())

        lam = 1e-3
        for _ in range(iterations):
            r = residual(u)
            eye = 1e-4 * torch.eye(3, dtype=u.dtype)  # central differences (grid_sample has no forward mode)
            J = torch.stack([(residual(u + e) - residual(u - e)) / 2e-4 for e in eye], 1)  # (P, 3)
            wgt = torch.where(r.abs() < 0.02, torch.ones_like(r), 0.02 / r.abs().clamp_min(1e-12))
            Hm, g = J.T @ (wgt[:, None] * J), J.T @ (wgt * r)
            while lam < 1e8:
                step = -torch.linalg.solve(Hm + lam * torch.diag(Hm.diagonal()), g)
                if cost(residual(u + step)) < cost(r):
                    u, lam = u + step, lam / 3
                    break
                lam *= 5
            else:
                break
            if float(step.abs().max()) < 1e-7:  # converged at this level
                break
    warped, inside = warp_by_rotation(b, u, Ks)
    before = float((b - a).abs().mean()) * 255
    after = float(((warped - a).abs() * inside).sum() / inside.sum()) * 255
    return u.numpy(), before, after


def camera_share_of(error_before: float, error_after: float) -> float:
    """How much of two frames' difference the rotation measured between them removes: ``1 - after / before`` (the
    grey errors of :func:`measure_rotation`)."""
    return 1 - error_after / max(error_before, 1e-9)


@dataclass
class Window:
    """One blurred window of a video and its measured truth."""

    centre: str  # the centre frame's file name
    start: int  # index of its first frame
    frames: int
    axis: list[float]  # the measured rotation's unit axis
    rotation_deg: float
    error_before: float  # mean absolute grey error (8-bit levels) between the first and last frames
    error_after: float  # ... after aligning them by the measured rotation

    @property
    def camera_share(self) -> float:
        """How much of the frames' difference the measured rotation removes (:func:`camera_share_of`)."""
        return camera_share_of(self.error_before, self.error_after)

    def to_dict(self) -> dict:
        return asdict(self) | {"camera_share": self.camera_share}


def intrinsics_of(H: int, W: int) -> torch.Tensor:
    """(3, 3) float64: the intrinsics ``wfb reconstruct`` assumes for an H x W photo without EXIF."""
    photo = Photo(path=Path("frame"), rgb=np.zeros((H, W, 3), np.float32), mode="RGB")
    return torch.as_tensor(intrinsics_for(photo, None)[0], dtype=torch.float64)


def measure_windows(frames: list[Path], every: int = WINDOW_EVERY, lengths: list[int] = (WINDOW_FRAMES,),
                    min_deg: float = MIN_ROTATION_DEG, progress: bool = False) -> list[Window]:
    """The windows of a video (:func:`video_windows`) whose measured rotation is at least ``min_deg``, with their
    truth."""
    out = []
    for c, n in tqdm(video_windows(frames, every, list(lengths)), desc="measure video windows", unit="window",
                     file=sys.stderr, disable=not progress, leave=False):
        start = c - n // 2
        first, last = read_frame(frames[start])[None], read_frame(frames[start + n - 1])[None]
        u, before, after = measure_rotation(first, last, intrinsics_of(*first.shape[-2:]))
        axis, angle = axis_angle(rotation_matrix(u))
        if math.degrees(angle) >= min_deg:
            out.append(Window(frames[c].name, start, n, axis.tolist(), math.degrees(angle), before, after))
    return out


def blurred_photo(frames: list[Path], window: Window):
    """The window's frames averaged in linear light, as a :class:`~worldfromblur.reconstruct.photo.Photo`."""
    stack = torch.stack([read_frame(p) for p in frames[window.start:window.start + window.frames]])
    blurred = blur_frames(stack, 0)
    return Photo(path=frames[window.start + window.frames // 2], rgb=blurred.permute(1, 2, 0).numpy(), mode="RGB")


def axis_errors(engine, frames: list[Path], windows: list[Window], progress: bool = False,
                label: str = "model") -> list[float]:
    """Per window, the angle (degrees, up to sign) between the measured rotation axis and that of ``engine``'s
    reconstruction (a :class:`~worldfromblur.reconstruct.Reconstructor`)."""
    out = []
    for w in tqdm(windows, desc=f"reconstruct video windows: {label}", unit="window", file=sys.stderr,
                  disable=not progress, leave=False):
        photo = blurred_photo(frames, w)
        K = intrinsics_of(*photo.rgb.shape[:2])
        rec = engine(photo, [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])])
        out.append(axis_error_deg(np.asarray(w.axis), axis_angle(reconstructed_rotation(rec))[0]))
    return out


def judged_median(errors: list[float], windows: list[Window], share: float = CAMERA_SHARE) -> tuple[float, int]:
    """The median axis error over the windows whose camera share is at least ``share`` (all when none is), and how
    many windows that is."""
    picked = [e for e, w in zip(errors, windows) if w.camera_share >= share] or errors
    return statistics.median(picked), len(picked)


def evaluate_video(folder: Path, models: dict, device: str = "cpu", refine_steps: int | None = None,
                   progress: bool = False) -> dict:
    """Each model (``{name: WorldFromBlur}``) on the blurred windows of one video, by ``wfb reconstruct``'s engine
    with refinement (``refine_steps``: its default when None), outputs kept near the working size (only the
    trajectory is scored): per model the axis errors, the judged median (:func:`judged_median`) and the median over
    all windows."""
    frames = frame_paths(folder)
    windows = measure_windows(frames, progress=progress)
    if not windows:
        raise WfbError(f"{folder}: no window of {WINDOW_FRAMES} frames turns {MIN_ROTATION_DEG} degrees or more; "
                       "give a hand-held video that moves")
    H, W = read_frame(frames[0]).shape[-2:]
    report = {"data": str(folder), "windows": [w.to_dict() for w in windows], "camera_share": CAMERA_SHARE,
              "models": {}}
    for name, model in models.items():
        w, h = working_size(W, H, model.cfg.input_size)
        options = {} if refine_steps is None else {"refine_steps": refine_steps}
        engine = Reconstructor(model, device, max_pixels=w * h, **options)
        errors = axis_errors(engine, frames, windows, progress, name)
        judged, count = judged_median(errors, windows)
        report["models"][name] = {"axis_errors_deg": errors, "judged_median_deg": judged, "judged_windows": count,
                                  "median_deg": statistics.median(errors)}
    return report


def compare_video(new: dict, old: dict, tolerance: float = VIDEO_TOLERANCE, refined: bool = True) -> dict:
    """:func:`~worldfromblur.training.recipe.compare_models`' verdict for a video: better when the judged median
    axis error is lower, worse when it is higher by more than ``tolerance`` (a share of the shipped model's).
    ``refined`` only names the term (the networks' own rotation when the models were scored without refinement)."""
    name = "real rotation axis error deg" + (", after refinement" if refined else ", networks alone")
    a, b = new["judged_median_deg"], old["judged_median_deg"]
    better, worse = ([name] if a < b else []), ([name] if a > b * (1 + tolerance) else [])
    return {"terms": {name: {"model": a, "shipped": b}}, "better": better, "worse": worse,
            "beats_shipped": bool(better) and not worse}


__all__ = ["Window", "axis_angle", "axis_error_deg", "axis_errors", "camera_share_of", "compare_video",
           "evaluate_video", "frame_paths", "judged_median", "measure_rotation", "measure_windows", "read_frame",
           "reconstructed_rotation", "rotation_matrix", "video_windows", "warp_by_rotation"]
