"""Reading a user's photograph and its camera: any common format and mode, EXIF orientation and focal length.

A photo becomes an (H, W, 3) float32 sRGB array in [0, 1] in the orientation a viewer shows (EXIF rotation applied):

* 8-bit modes (L, LA, P, RGB, RGBA, CMYK, YCbCr) are converted to RGB; an alpha channel is dropped (the colours are
  kept as they are, not blended onto a background);
* 16-bit and 32-bit integer images (PIL modes I;16 and I) are read as 0..65535; float images (mode F) as 0..1;
* an image whose pixels are not finite (a float TIFF with NaN or infinity) is refused.

Intrinsics, in pixels of the photo as shown, come from one of four places, in this order (see :func:`intrinsics_for`):
``--intrinsics fx fy cx cy``; the EXIF 35 mm-equivalent focal length (``FocalLengthIn35mmFilm``), read over the
frame's diagonal as the standard defines it, with the principal point at the centre; the EXIF focal length in mm
(``FocalLength``) times the sensor's pixels per mm (``FocalPlaneXResolution`` in ``FocalPlaneResolutionUnit``, scaled
by the photo's width over ``PixelXDimension`` when the photo was resized after it was taken; square pixels assumed);
or a default horizontal field of view of :data:`DEFAULT_HFOV_DEG` degrees (the Kinect camera of NYU Depth v2, whose
geometry the synthetic training data copies), with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import WfbError

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
MIN_SIDE = 32
"""Shortest side a photo may have, in pixels."""
MAX_PIXELS = 80_000_000
"""Largest photo read, in pixels (80 megapixels, below the size at which Pillow itself warns); a larger header is refused before any pixel is decoded."""
DEFAULT_HFOV_DEG = 63.3
"""Horizontal field of view assumed when neither ``--intrinsics`` nor EXIF give one: NYU's Kinect (fx = 518.9 px
at 640 px wide), the camera the synthetic training data imitates."""
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
EXIF_FOCAL_35MM = 0xA405
EXIF_FOCAL_LENGTH = 0x920A
EXIF_FOCAL_PLANE_X_RESOLUTION = 0xA20E
EXIF_FOCAL_PLANE_RESOLUTION_UNIT = 0xA210
EXIF_PIXEL_X_DIMENSION = 0xA002
EXIF_IFD = 0x8769
FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
"""``FocalPlaneResolutionUnit`` codes: inch (the default), centimetre, and the millimetre and micrometre that some
cameras write although EXIF 2.3 lists only the first two."""


class PhotoError(WfbError):
    """A photo that cannot be used; the message starts with its path."""


@dataclass
class Photo:
    path: Path
    rgb: np.ndarray  # (H, W, 3) float32 sRGB in [0, 1], as shown (EXIF rotation applied)
    mode: str  # PIL mode of the file
    focal_35mm: float | None = None  # EXIF FocalLengthIn35mmFilm, millimetres
    focal_px: float | None = None  # EXIF FocalLength x FocalPlaneXResolution, pixels of the photo as stored
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def find_photos(inputs: list[Path]) -> list[Path]:
    """The photos named on the command line: files as given, folders expanded to their images (sorted, not recursive)."""
    found: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            inside = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SUFFIXES)
            if not inside:
                raise PhotoError(f"{p}: the folder holds no PNG, JPEG, TIFF or WebP images")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise PhotoError(f"{p}: no such file or folder")
    stems = {}
    for p in found:
        if p.stem in stems and stems[p.stem] != p:
            raise PhotoError(f"{p}: has the same name as {stems[p.stem]}; their output folders would clash, rename one")
        stems[p.stem] = p
    return found


def check_header(path: Path) -> tuple[int, int]:
    """Open a photo's header only (no pixels decoded) and check that it is an image of a usable size."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise PhotoError(f"{path}: the image is too large to read safely (over {MAX_PIXELS // 1_000_000} megapixels); "
                         "downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise PhotoError(f"{path}: not a readable image ({_reason(err)}); give a PNG, JPEG, TIFF or WebP photo") from None
    if w * h > MAX_PIXELS:
        raise PhotoError(f"{path}: the image is {w}x{h}, over {MAX_PIXELS // 1_000_000} megapixels; downscale it first")
    if min(w, h) < MIN_SIDE:
        raise PhotoError(f"{path}: the image is {w}x{h}; a photo needs at least {MIN_SIDE} pixels on each side")
    return w, h


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text.replace(str(Path.cwd()) + "/", "")


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im.convert("I") if mode != "I" else im, dtype=np.float64)
        rgb = np.repeat((a / 65535.0)[..., None], 3, axis=-1)
    elif mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise PhotoError(f"{path}: the image has NaN or infinite pixel values; give a photo with finite values")
        rgb = np.repeat(a[..., None], 3, axis=-1)
    else:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    if not np.isfinite(rgb).all():
        raise PhotoError(f"{path}: the image has NaN or infinite pixel values; give a photo with finite values")
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _exif_number(im: Image.Image, tag: int) -> float | None:
    """A positive finite EXIF value from the Exif IFD (or, as some writers put it, the main IFD); None otherwise."""
    try:
        exif = im.getexif()
        value = exif.get_ifd(EXIF_IFD).get(tag) or exif.get(tag)
        value = float(value) if value is not None else None
    except (TypeError, ValueError, OSError, SyntaxError, ZeroDivisionError):
        return None
    return value if value and math.isfinite(value) and value > 0 else None


def _focal_35mm(im: Image.Image) -> float | None:
    return _exif_number(im, EXIF_FOCAL_35MM)


def _focal_px(im: Image.Image) -> float | None:
    """Focal length in pixels of the stored image from FocalLength and the focal plane's resolution, or None."""
    focal_mm = _exif_number(im, EXIF_FOCAL_LENGTH)
    per_unit = _exif_number(im, EXIF_FOCAL_PLANE_X_RESOLUTION)
    unit = FOCAL_PLANE_UNIT_MM.get(int(_exif_number(im, EXIF_FOCAL_PLANE_RESOLUTION_UNIT) or 2))
    if focal_mm is None or per_unit is None or unit is None:
        return None
    width_at_capture = _exif_number(im, EXIF_PIXEL_X_DIMENSION)
    resized = im.size[0] / width_at_capture if width_at_capture else 1.0
    return focal_mm * per_unit / unit * resized


def load_photo(path: Path) -> Photo:
    """Decode a photo (see the module docstring); raises :class:`PhotoError` naming the file and what to do."""
    path = Path(path)
    check_header(path)
    try:
        with Image.open(path) as im:
            im.load()
            focal, focal_px = _focal_35mm(im), _focal_px(im)
            mode = im.mode
            shown = ImageOps.exif_transpose(im)
            rgb = _to_rgb(shown, path)
    except PhotoError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise PhotoError(f"{path}: the image cannot be decoded ({_reason(err)}); the file is truncated or corrupt") from None
    return Photo(path=path, rgb=rgb, mode=mode, focal_35mm=focal, focal_px=focal_px)


def intrinsics_for(photo: Photo, given: list[float] | None = None) -> tuple[np.ndarray, str]:
    """K (3, 3) in pixels of the photo as shown, and where it came from: "given", "exif" (35 mm equivalent),
    "exif-focal-plane" or "default"."""
    W, H = photo.size
    if given is not None:
        fx, fy, cx, cy = (float(x) for x in given)
        if not all(math.isfinite(x) for x in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            raise PhotoError(f"--intrinsics: fx and fy must be positive and all four finite, got {fx} {fy} {cx} {cy}")
        if not (-0.5 <= cx <= W - 0.5 and -0.5 <= cy <= H - 0.5):
            raise PhotoError(f"{photo.path}: --intrinsics puts the principal point ({cx}, {cy}) outside the {W}x{H} "
                             "image; give fx fy cx cy in pixels of this image")
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), "given"
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    if photo.focal_35mm is not None:
        f = photo.focal_35mm * math.hypot(W, H) / FULL_FRAME_DIAGONAL_MM
        return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64), "exif"
    if photo.focal_px is not None:
        f = photo.focal_px
        return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64), "exif-focal-plane"
    f = (W / 2.0) / math.tan(math.radians(DEFAULT_HFOV_DEG) / 2.0)
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64), "default"
