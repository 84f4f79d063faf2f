"""Procedural textures with the statistics of natural images, as tileable mip-mapped albedo maps.

Blur is learnt from edges, so the textures matter more than the shapes. The bank mixes:

* **dead leaves** (occluding discs with power-law radii): the standard model of natural-image edge statistics;
* **fractal noise** (1/f^beta spectrum, random colour ramp): stone, plaster, fabric;
* **stripes and checks** at random orientation and period, with noise: man-made patterns and strong edges;
* **wood and marble** (rings or bands bent by fractal turbulence);
* **photographs** from a folder the user gives (``--textures DIR``), as random crops.

Textures are linear-light albedo in [0.02, 0.9], float32, tileable (except photographs), with a mip pyramid so that
far surfaces are filtered rather than aliased.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...imaging import srgb_to_linear

TEXTURE_SIZE = 256
PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass
class Texture:
    """A mip pyramid ``levels[0]`` (S, S, 3) ... of linear albedo; each level halves the size."""

    kind: str
    levels: list[np.ndarray]


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    """k sRGB colours: a random base hue with varied saturation and value, as in real rooms."""
    base = rng.random(3)
    cols = np.clip(base + rng.normal(0, 0.35, (k, 3)), 0, 1)
    grey = cols.mean(1, keepdims=True)
    sat = rng.uniform(0.2, 1.0, (k, 1))
    return np.clip(grey + sat * (cols - grey), 0.03, 0.97)


def _fractal_noise(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Tileable noise with a 1/f^beta amplitude spectrum, normalised to [0, 1]."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**beta
    spec[0, 0] = 0
    x = np.fft.irfft2(spec, s=(size, size))
    x -= x.min()
    return x / max(x.max(), 1e-12)


def _ramp(t: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] through a piecewise-linear colour ramp."""
    k = len(colours)
    pos = np.clip(t, 0, 1) * (k - 1)
    i = np.minimum(pos.astype(int), k - 2)
    w = (pos - i)[..., None]
    return colours[i] * (1 - w) + colours[i + 1] * w


def dead_leaves(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    img = Image.new("RGB", (size, size), tuple(int(c * 255) for c in _palette(rng, 1)[0]))
    draw = ImageDraw.Draw(img)
    cols = (_palette(rng, 12) * 255).astype(int)
    rmin, rmax = 2.0, size / 4
    # Radii with density ~ r^-3 (scale invariance), drawn by inverting the CDF.
    n = int(rng.integers(250, 700))
    u = rng.random(n)
    r = 1.0 / np.sqrt(1 / rmin**2 - u * (1 / rmin**2 - 1 / rmax**2))
    xy = rng.random((n, 2)) * size
    for (x, y), rad, c in zip(xy, r, cols[rng.integers(0, len(cols), n)]):
        for dx in (-size, 0, size):  # draw wrapped copies so the texture tiles
            for dy in (-size, 0, size):
                cx, cy = x + dx, y + dy
                if -rad <= cx <= size + rad and -rad <= cy <= size + rad:
                    draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), fill=tuple(int(v) for v in c))
    return np.asarray(img, dtype=np.float32) / 255.0


def fractal(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    t = _fractal_noise(rng, size, rng.uniform(0.8, 1.6))
    fine = _fractal_noise(rng, size, 0.8)
    t = np.clip(0.85 * t + 0.15 * fine, 0, 1)
    return _ramp(t, _palette(rng, int(rng.integers(2, 5)))).astype(np.float32)


def stripes(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    kx, ky = rng.integers(-8, 9, 2)
    if kx == 0 and ky == 0:
        kx = 4
    phase = 2 * np.pi * (kx * xx + ky * yy)
    if rng.random() < 0.35:  # checks
        kx2, ky2 = -ky, kx
        phase2 = 2 * np.pi * (kx2 * xx + ky2 * yy)
        t = ((np.sin(phase) > 0) ^ (np.sin(phase2) > 0)).astype(np.float64)
    else:
        duty = rng.uniform(-0.6, 0.6)
        t = (np.sin(phase) > duty).astype(np.float64)
    t = np.clip(t + 0.15 * (_fractal_noise(rng, size, 1.5) - 0.5), 0, 1)
    return _ramp(t, _palette(rng, 2)).astype(np.float32)


def wood(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    turb = _fractal_noise(rng, size, 1.6)
    if rng.random() < 0.5:  # wood: rings along one axis
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (int(rng.integers(3, 12)) * yy + 1.5 * turb))
    else:  # marble: bands bent by turbulence
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (int(rng.integers(1, 5)) * (xx + yy) + 3.0 * turb))
    return _ramp(t ** rng.uniform(0.5, 2.0), _palette(rng, 3)).astype(np.float32)


def photo(rng: np.random.Generator, paths: list[Path], size: int = TEXTURE_SIZE) -> np.ndarray:
    path = paths[int(rng.integers(len(paths)))]
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = int(min(w, h) * rng.uniform(0.3, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        im = im.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
        return np.asarray(im, dtype=np.float32) / 255.0


def mip_pyramid(albedo: np.ndarray, levels: int = 5) -> list[np.ndarray]:
    out = [albedo]
    for _ in range(levels - 1):
        a = out[-1]
        if a.shape[0] < 4:
            break
        out.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    return out


def texture_photos(folder: str | Path) -> list[Path]:
    """Image files in a folder (recursively), sorted so that a build is reproducible."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return paths


BANK_SIZE = 48  # textures in a bank


def make_texture_bank(seed: int, count: int = BANK_SIZE, photos: list[Path] | None = None,
                      key: tuple[int, ...] = ()) -> list[Texture]:
    """A deterministic bank of textures, from ``seed`` and ``key`` (see :class:`TextureBanks`); rooms pick from it
    and vary scale and tint."""
    rng = np.random.default_rng([seed, 7919, *key])
    kinds = ["dead_leaves", "fractal", "stripes", "wood"] + (["photo"] if photos else [])
    weights = np.array([0.35, 0.3, 0.2, 0.15] + ([0.4] if photos else []))
    bank = []
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        sub = np.random.default_rng(rng.integers(2**63))
        if kind == "photo":
            srgb = photo(sub, photos)
        else:
            srgb = {"dead_leaves": dead_leaves, "fractal": fractal, "stripes": stripes, "wood": wood}[kind](sub)
        albedo = np.clip(srgb_to_linear(srgb) * 0.9, 0.02, 0.9).astype(np.float32)
        bank.append(Texture(kind, mip_pyramid(albedo)))
    return bank


class TextureBanks:
    """The texture bank of each room of a build, pool or stream: a new bank of 48 for every ``rooms`` consecutive
    rooms (keyed ``[seed, 7919, word, room // rooms]``, ``word`` naming the use), or with ``rooms`` = 0 one bank for
    all of them (``[seed, 7919]``: a seed's 48 textures, as every build before had). A bank is made when its first
    room asks for it (about 8 ms a texture) and kept while the next rooms use it.

    One bank for all the rooms of a pool lets a network learn its 48 textures instead of blur: the shipped
    deblurrer, trained on one seed's bank, gains 0.95 dB on new rooms with that bank and 0.05 dB on new rooms with
    another (docs/real-data.md)."""

    def __init__(self, seed: int, rooms: int = 0, photos: list[Path] | None = None, word: int = 0):
        if rooms < 0:
            raise ValueError(f"texture_rooms must be 0 (one bank for all rooms) or a number of rooms, got {rooms}")
        self.seed, self.rooms, self.photos, self.word = seed, rooms, photos, word
        self.group: int | None = None
        self.bank: list[Texture] = []

    def group_of(self, room: int) -> int:
        return 0 if self.rooms == 0 else room // self.rooms

    def key_of(self, group: int) -> tuple[int, ...]:
        """The generator key of bank ``group``: ``make_texture_bank(seed, photos=photos, key=key_of(group))``."""
        return () if self.rooms == 0 else (self.word, group)

    def __call__(self, room: int, made: list[Texture] | None = None) -> list[Texture]:
        """The bank of ``room``; ``made``: that bank when it was made elsewhere (another process), else it is made
        here when the room starts a new group."""
        group = self.group_of(room)
        if group != self.group:
            if made is None:
                made = make_texture_bank(self.seed, photos=self.photos, key=self.key_of(group))
            self.bank, self.group = made, group
        return self.bank


def sample_texture(tex: Texture, s: np.ndarray, t: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping lookup of texel coordinates (s, t) (in level-0 texels) at per-point mip ``level``.

    Args:
        s, t: (N,) coordinates in level-0 texels.
        level: (N,) integer mip level per point.

    Returns:
        (N, 3) albedo.
    """
    out = np.empty((s.shape[0], 3), np.float32)
    lo, hi = int(level.min()), int(level.max())
    for lv in range(lo, hi + 1):
        idx = np.nonzero(level == lv)[0] if hi > lo else slice(None)
        if hi > lo and len(idx) == 0:
            continue
        img = tex.levels[int(lv)]
        size = img.shape[0]
        flat = img.reshape(-1, 3)
        x = s[idx] * (0.5**lv) - 0.5
        y = t[idx] * (0.5**lv) - 0.5
        x0, y0 = np.floor(x), np.floor(y)
        wx, wy = (x - x0)[:, None], (y - y0)[:, None]
        x0 = x0.astype(np.int64) % size
        y0 = y0.astype(np.int64) % size
        x1, y1 = (x0 + 1) % size, (y0 + 1) % size
        y0, y1 = y0 * size, y1 * size
        corners = np.take(flat, np.concatenate([y0 + x0, y0 + x1, y1 + x0, y1 + x1]), axis=0).reshape(4, -1, 3)  # take: 4x faster than fancy indexing
        top = corners[0] + (corners[1] - corners[0]) * wx
        bottom = corners[2] + (corners[3] - corners[2]) * wx
        out[idx] = top + (bottom - top) * wy
    return out
