"""Frame pools: sharp RGB-D frames with intrinsics, the raw material of the on-the-fly blur stream.

A pool is a set of sharp colour frames of one size, each with its z-depth (metres, 0 = no reading) and its
intrinsics. The stream (:mod:`worldfromblur.data.stream`) draws a camera motion for a frame and renders the exposure
from it, so a pool needs no poses and no consecutive frames: any RGB-D frame will do. Pools come from

* the synthetic engine (:func:`synthetic_pool`: one render per frame, each its own room; no files needed),
* a built dataset's sharp frames and depth (:func:`dataset_pool`),
* real RGB-D video read by the TUM / ICL-NUIM / NYU / 7-Scenes readers (:func:`rgbd_pool`).

On disk (``wfb make-pool``)::

    POOL/
      pool.json            format, version, size [W, H], and per frame: name, source, K as [fx, fy, cx, cy]
      rgb/000000.png       8-bit sRGB colour (.png, or .jpg where --jpeg was asked for, to keep a pool small)
      depth/000000.png     16-bit z-depth in millimetres, 0 = no reading

The folder is written under a temporary name and renamed when complete; an existing pool is never overwritten.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..geometry import scale_intrinsics
from ..errors import WfbError
from ..imaging import to_uint8
from .dataset import BlurDataset
from .format import DatasetError, depth_to_mm
from .rgbd.build import open_sequence, resize_depth, resize_rgb
from .rgbd.readers import load_depth, load_rgb
from .synthetic.engine import KEYS, SyntheticOptions, check_focal_range, check_seed, render_still
from .synthetic.textures import TextureBanks, texture_photos
from .workers import abandon, result

POOL_FORMAT = "world-from-blur frame pool"
POOL_VERSION = 1
SYNTHETIC_SIZE = (320, 240)
"""Frame size [W, H] of a synthetic:N pool entry (the stream zooms and crops from it)."""
TEXTURE_ROOMS = 8
"""Frames of a synthetic:N pool that share one bank of 48 textures (``data.texture_rooms``): 6,000 frames meet 36,000
textures instead of one seed's 48, which a network learns by heart (docs/real-data.md)."""


def held_out_count(n: int, fraction: float) -> int:
    """How many of a source's ``n`` frames (its last ones) are held out: round(n * fraction), or none when that
    would leave no frame on one side."""
    k = int(round(n * fraction)) if fraction > 0 else 0
    return k if 0 < k < n else 0


@dataclass
class FramePool:
    """Sharp RGB-D frames of one size.

    Attributes:
        rgb: (N, H, W, 3) uint8 sRGB.
        depth: (N, H, W) float32 z-depth in metres, 0 = no reading.
        K: (N, 3, 3) float64 intrinsics in pixels of these frames.
        names: a name per frame (where it came from).
        sources: a source label per frame (a pool may mix sources; :meth:`split` holds out part of each).
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    K: torch.Tensor
    names: list[str]
    sources: list[str]

    def __post_init__(self):
        N = self.rgb.shape[0]
        if N == 0:
            raise DatasetError("the frame pool is empty; give a pool with at least one frame")
        if self.rgb.dtype != torch.uint8 or self.rgb.dim() != 4 or self.rgb.shape[-1] != 3:
            raise DatasetError(f"pool colour must be (N, H, W, 3) uint8, got {tuple(self.rgb.shape)} {self.rgb.dtype}")
        if self.depth.shape != self.rgb.shape[:3] or self.K.shape != (N, 3, 3) or len(self.names) != N:
            raise DatasetError("pool colour, depth, intrinsics and names do not match in number or size")
        # frame by frame: a reduction over the whole pool at once makes an int64 copy of it (gigabytes)
        measured = torch.stack([torch.count_nonzero(d > 0) for d in self.depth]) / self.depth[0].numel()
        if bool((measured < 0.05).any()):
            bad = self.names[int(torch.nonzero(measured < 0.05)[0, 0])]
            raise DatasetError(f"pool frame {bad} has depth on fewer than 5% of its pixels; a pool needs depth "
                               f"for every frame (remove such frames)")

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the frames."""
        return int(self.rgb.shape[2]), int(self.rgb.shape[1])

    def subset(self, index) -> "FramePool":
        index = list(index)
        return FramePool(self.rgb[index], self.depth[index], self.K[index], [self.names[i] for i in index],
                         [self.sources[i] for i in index])

    def split(self, held_out: float) -> tuple["FramePool", "FramePool | None"]:
        """(training part, held-out part): the last ``held_out`` fraction of each source's frames is held out.

        Consecutive video frames look alike, so the held-out part is a contiguous stretch per source, not a random
        draw. Returns ``(self, None)`` when ``held_out`` is 0 or a source has too few frames to give any.
        """
        train, val = self.split_index(held_out)
        return (self, None) if val is None else (self.subset(train), self.subset(val))

    def split_index(self, held_out: float) -> tuple[list[int], list[int] | None]:
        """The frame indices of :meth:`split`'s two parts (all frames and None when it holds none out)."""
        if held_out <= 0:
            return list(range(len(self))), None
        train, val = [], []
        for source in dict.fromkeys(self.sources):
            idx = [i for i, s in enumerate(self.sources) if s == source]
            k = held_out_count(len(idx), held_out)
            if k == 0:
                return list(range(len(self))), None
            train += idx[:-k]
            val += idx[-k:]
        return train, val


def gather_pools(parts: list[tuple[FramePool, Sequence[int]]]) -> FramePool:
    """One pool of the frames ``index`` of each ``(pool, index)``, in order, copied once into tensors allocated for
    the result (no intermediate copies: a pool of thousands of frames takes gigabytes)."""
    sizes = {p.size for p, _ in parts}
    if len(sizes) != 1:
        raise DatasetError(f"pools of different frame sizes cannot be mixed ({', '.join(f'{w}x{h}' for w, h in sizes)}); "
                           f"build them with the same --size")
    first, n = parts[0][0], sum(len(index) for _, index in parts)
    out = [torch.empty((n, *x.shape[1:]), dtype=x.dtype) for x in (first.rgb, first.depth, first.K)]
    names, sources, at = [], [], 0
    for pool, index in parts:
        index = list(index)
        rows = torch.as_tensor(index, dtype=torch.long)
        for src, dst in zip((pool.rgb, pool.depth, pool.K), out):
            if src.dtype == dst.dtype:
                torch.index_select(src, 0, rows, out=dst[at:at + len(rows)])
            else:
                dst[at:at + len(rows)] = src.index_select(0, rows)
        names += [pool.names[i] for i in index]
        sources += [pool.sources[i] for i in index]
        at += len(rows)
    return FramePool(*out, names, sources)


# ------------------------------------------------------------------------------------------------- builders


_WORKER: dict = {}


def _init_synthetic(seed: int, opts, photos) -> None:
    banks = TextureBanks(seed, opts.texture_rooms, photos, KEYS["pool textures"])  # one per process
    _WORKER.update(seed=seed, opts=opts, banks=banks)


def _synthetic_frame(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return render_still(_WORKER["seed"], index, _WORKER["opts"], _WORKER["banks"](index))


def _synthetic_frames(index: range) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [_synthetic_frame(i) for i in index]


def synthetic_pool(num: int, size: tuple[int, int] = SYNTHETIC_SIZE, seed: int = 0, textures: str | None = None,
                   workers: int = 1, progress: bool = True, start: int = 0,
                   texture_rooms: int = TEXTURE_ROOMS, focal_range: list | None = None) -> FramePool:
    """Frames ``start .. num - 1`` of procedural rooms, each its own room, rendered exactly (about 30 ms a frame at
    320x240, and 8 ms a texture of each new bank); frame i depends only on (seed, i, texture_rooms, focal_range). A
    new bank of 48 textures every ``texture_rooms`` frames (0: one bank for all, a seed's 48 textures; see
    :class:`~worldfromblur.data.synthetic.textures.TextureBanks`). ``focal_range`` [lo, hi]: each frame's focal
    length is the default camera's times a factor drawn log-uniformly from it
    (:func:`~worldfromblur.data.synthetic.engine.frame_K`), so that the pool spans fields of view; None: the default
    camera's for every frame."""
    if num < 1 or not 0 <= start < num:
        raise DatasetError(f"a synthetic pool needs at least one frame, got frames {start}..{num - 1}")
    try:
        seed = check_seed(seed)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    if texture_rooms < 0:
        raise DatasetError("texture_rooms must be 0 (one bank for all frames) or a number of frames, "
                           f"got {texture_rooms}")
    try:
        focal_range = check_focal_range(focal_range)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    opts = SyntheticOptions(width=size[0], height=size[1], textures=textures, texture_rooms=texture_rooms,
                            focal_range=focal_range)
    init = (seed, opts, texture_photos(textures) if textures else None)
    index = range(start, num)
    bar = dict(total=len(index), desc="render pool", unit="frame", disable=not progress)
    rgb = depth = K = None

    def store(k: int, frame: tuple) -> None:  # into arrays of the final size: no list of frames, no stacked copy
        nonlocal rgb, depth, K
        if rgb is None:
            N = len(index)
            rgb, depth = np.empty((N, *frame[0].shape), np.uint8), np.empty((N, *frame[1].shape), np.float32)
            K = np.empty((N, 3, 3), np.float64)
        rgb[k], depth[k], K[k] = frame

    done = 0
    with tqdm(**bar) as progress_bar:
        if workers > 1 and len(index) >= 4 * workers:
            ctx = multiprocessing.get_context("spawn")  # the caller may hold a CUDA context, which must not be forked
            ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_synthetic, initargs=init)
            try:
                tasks = deque(ex.submit(_synthetic_frames, index[a:a + 16]) for a in range(0, len(index), 16))
                while tasks:  # in order; a task's frames are dropped once stored
                    frames = result(tasks.popleft(), ex)
                    for frame in frames:
                        store(done, frame)
                        done += 1
                    progress_bar.update(len(frames))
            except BrokenProcessPool as err:  # the frames are pure functions of their index: render the rest here
                abandon(ex)
                print(f"warning: a pool-rendering worker died ({err}); rendering the other {len(index) - done} "
                      "frames in this process", file=sys.stderr)
            except BaseException:
                ex.shutdown(wait=False, cancel_futures=True)
                raise
            else:
                ex.shutdown()
        if done < len(index):
            _init_synthetic(*init)
            for i in index[done:]:
                store(done, _synthetic_frame(i))
                done += 1
                progress_bar.update()
    return FramePool(torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(K),
                     [f"synthetic-{seed}-{i:06d}" for i in index], ["synthetic"] * len(index))


def dataset_pool(root: str | Path, split: str = "train") -> FramePool:
    """The sharp reference frames and depth of a built dataset's split."""
    ds = BlurDataset(root, split=split)
    if len(ds) == 0:
        raise DatasetError(f"{root}: split {split!r} has no samples to make a pool of")
    recs = [ds.record(i) for i in range(len(ds))]
    if len({r.sharp.shape for r in recs}) != 1:
        raise DatasetError(f"{root}: samples of different sizes; a pool needs one size")
    return FramePool(torch.from_numpy(np.stack([r.sharp for r in recs])),
                     torch.from_numpy(np.stack([r.depth for r in recs])).float(),
                     torch.from_numpy(np.stack([np.asarray(r.K, np.float64) for r in recs])),
                     [f"{Path(root).name}/{i}" for i in ds.ids], [f"dataset:{Path(root).name}"] * len(recs))


def rgbd_pool(roots: list[str], opts, stride: int = 1, progress: bool = True) -> FramePool:
    """Every ``stride``-th frame with depth of RGB-D sequences, resized to ``opts.width x opts.height``.

    ``opts`` is an :class:`~worldfromblur.data.rgbd.RGBDOptions` (its ``kind``, reader options and size are used).
    """
    size = (opts.width, opts.height)
    opts = replace(opts, poses="none")  # a pool needs no poses: a sequence without ground truth reads too
    rgb, depth, Ks, names, sources = [], [], [], [], []
    for root in roots:
        seq = open_sequence(root, opts)
        frames = [f for f in seq.frames[::stride] if f.depth is not None]
        if not frames:
            raise DatasetError(f"{root}: no frame with a depth image; a pool needs depth")
        W0, H0 = seq.size
        K = scale_intrinsics(torch.as_tensor(seq.K, dtype=torch.float64), size[0] / W0, size[1] / H0)
        for f in tqdm(frames, desc=f"pool {seq.name}", unit="frame", disable=not progress):
            rgb.append(to_uint8(resize_rgb(load_rgb(seq, f), size)))
            depth.append(resize_depth(load_depth(seq, f), size).astype(np.float32))
            Ks.append(K)
            names.append(f"{seq.name}/{f.rgb.name}")
            sources.append(f"{seq.kind}:{seq.name}")
    return FramePool(torch.from_numpy(np.stack(rgb)), torch.from_numpy(np.stack(depth)), torch.stack(Ks), names, sources)


# ------------------------------------------------------------------------------------------------- pool specs


def pool_entries(specs: list) -> list[tuple[str, int, int | None]]:
    """The entries of ``data.pool``, checked: (folder or "synthetic:N", repeat K of "*K", N or None)."""
    if not specs:
        raise WfbError("data.pool is empty; name pool folders (wfb make-pool) or synthetic:N")
    entries = []
    for spec in specs:
        entry, _, times = str(spec).partition("*")
        try:
            repeat = int(times) if times else 1
            assert repeat >= 1
        except (ValueError, AssertionError):
            raise WfbError(f"data.pool: {entry}*{times}: the repeat after * must be a whole number >= 1") from None
        num = None
        if entry.startswith("synthetic:"):
            try:
                num = int(entry.split(":", 1)[1])
            except ValueError:
                raise WfbError(f"data.pool: {entry!r} must be synthetic:N with N a whole number") from None
        entries.append((entry, repeat, num))
    return entries


def build_pool(specs: list, seed: int = 0, held_out: float = 0.0, progress: bool = True,
               textures: str | None = None, held_out_only: bool = False,
               texture_rooms: int = TEXTURE_ROOMS, focal_range: list | None = None
               ) -> tuple[FramePool | None, FramePool | None]:
    """(training frames, held-out frames) of ``data.pool``.

    Each entry is a pool folder (``wfb make-pool``) or "synthetic:N" (N frames rendered now, 320x240), optionally
    with "*K" appended to repeat its training frames K times (to weigh a small real pool against a large synthetic
    one; ``focal_range``: the synthetic frames' lenses, :func:`synthetic_pool`). Each entry's last ``held_out``
    fraction of frames per source is held out before any repetition, so the held-out frames never reach training.
    ``held_out_only`` skips the training frames (None), and renders only the held-out frames of synthetic entries,
    which are a pure function of their index.
    """
    train_parts, held_parts = [], []  # (pool, frame indices): gathered once at the end
    for entry, repeat, num in pool_entries(specs):
        if num is not None:
            if textures is not None and not texture_photos(textures):
                raise WfbError(f"data.textures: {textures} holds no photographs (.png, .jpg, ...)")
            k = held_out_count(num, held_out)
            if held_out_only and k == 0:
                continue
            pool = synthetic_pool(num, seed=seed, textures=textures, workers=min(os.cpu_count() or 1, 16),
                                  progress=progress, start=num - k if held_out_only else 0, texture_rooms=texture_rooms,
                                  focal_range=focal_range)
            if held_out_only:  # exactly the frames that split() would hold out
                held_parts.append((pool, range(len(pool))))
                continue
        else:
            pool = load_pool(entry)
        train_index, held_index = pool.split_index(held_out)
        train_parts += [(pool, train_index)] * repeat
        if held_index is not None:
            held_parts.append((pool, held_index))
    train = None if held_out_only else gather_pools(train_parts)
    return train, gather_pools(held_parts) if held_parts else None


def held_out_frames(specs: list, held_out: float) -> int:
    """How many frames ``build_pool`` would hold out of ``data.pool``, from the entries' sizes alone (no frame is read
    or rendered), so that a run with nothing to evaluate on stops before training."""
    total = 0
    for entry, _, num in pool_entries(specs):
        if num is not None:
            total += held_out_count(num, held_out)
            continue
        sources: dict[str, int] = {}
        for f in read_pool_meta(entry)["frames"]:
            sources[f.get("source", "")] = sources.get(f.get("source", ""), 0) + 1
        counts = [held_out_count(n, held_out) for n in sources.values()]
        total += sum(counts) if all(counts) else 0  # FramePool.split holds out nothing when a source cannot give any
    return total


class TrainingDepths(Sequence):
    """The depth maps of the training frames of ``data.pool`` (repeats included) as a lazy sequence: a folder
    pool's frames are read when the sequence is made, a synthetic pool's frames rendered one by one when asked
    for, so that a few evenly spaced frames cost a few renders (the median-depth reference of an evaluation)."""

    def __init__(self, specs: list, seed: int = 0, held_out: float = 0.0, textures: str | None = None,
                 texture_rooms: int = TEXTURE_ROOMS, focal_range: list | None = None):
        self.texture_rooms, self.focal_range = texture_rooms, focal_range
        self.parts: list[tuple[int, object]] = []  # (length, frames), frames a FramePool or a synthetic (num, opts)
        for entry, repeat, num in pool_entries(specs):
            if num is not None:
                part = (num - held_out_count(num, held_out), ("synthetic", seed, textures))
            else:
                train, _ = load_pool(entry).split(held_out)
                part = (len(train), train)
            self.parts += [part] * repeat
        self._opts = self._bank = None

    def __len__(self) -> int:
        return sum(n for n, _ in self.parts)

    def __getitem__(self, i: int):
        for n, frames in self.parts:
            if i < n:
                if isinstance(frames, FramePool):
                    return frames.depth[i].numpy()
                _, seed, textures = frames
                if self._opts is None:
                    self._opts = SyntheticOptions(width=SYNTHETIC_SIZE[0], height=SYNTHETIC_SIZE[1], textures=textures,
                                                  texture_rooms=self.texture_rooms, focal_range=self.focal_range)
                    self._bank = TextureBanks(seed, self.texture_rooms, texture_photos(textures) if textures else None,
                                              KEYS["pool textures"])
                return render_still(seed, i, self._opts, self._bank(i))[1]
            i -= n
        raise IndexError(i)


# ------------------------------------------------------------------------------------------------- files


def save_pool(pool: FramePool, out: str | Path, jpeg: int = 0) -> Path:
    """Write ``pool`` to the new folder ``out`` (``jpeg`` > 0: colour as JPEG of that quality, else PNG)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: already exists and is not empty; choose a new --out (a pool is never overwritten)")
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "rgb").mkdir(parents=True)
    (tmp / "depth").mkdir()
    frames = []
    for i in range(len(pool)):
        name = f"{i:06d}"
        im = Image.fromarray(pool.rgb[i].numpy())
        ext = "jpg" if jpeg > 0 else "png"
        im.save(tmp / "rgb" / f"{name}.{ext}", **({"quality": jpeg} if jpeg > 0 else {"compress_level": 6}))
        Image.fromarray(depth_to_mm(pool.depth[i].double().numpy())).save(tmp / "depth" / f"{name}.png", compress_level=6)
        K = pool.K[i]
        frames.append({"file": f"{name}.{ext}", "name": pool.names[i], "source": pool.sources[i],
                       "K": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]})
    meta = {"format": POOL_FORMAT, "version": POOL_VERSION, "size": list(pool.size), "frames": frames}
    (tmp / "pool.json").write_text(json.dumps(meta, indent=1) + "\n")
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


def read_pool_meta(folder: str | Path) -> dict:
    """The checked ``pool.json`` of a pool folder (cheap: no image is read)."""
    folder = Path(folder)
    path = folder / "pool.json"
    if not path.is_file():
        raise DatasetError(f"{folder}: not a frame pool (no pool.json); make one with `wfb make-pool`")
    try:
        meta = json.loads(path.read_text())
        assert meta.get("format") == POOL_FORMAT and isinstance(meta.get("frames"), list)
        W, H = meta["size"]
    except (ValueError, AssertionError, KeyError, TypeError):
        raise DatasetError(f"{path}: not a valid pool description; rebuild the pool with `wfb make-pool`") from None
    if not meta["frames"]:
        raise DatasetError(f"{folder}: the pool has no frames")
    return meta


def load_pool(folder: str | Path) -> FramePool:
    """Read a pool folder written by :func:`save_pool` (``wfb make-pool``), checking every file."""
    folder = Path(folder)
    meta = read_pool_meta(folder)
    W, H = meta["size"]
    rgb, depth, Ks = [], [], []
    for f in meta["frames"]:
        stem = Path(f["file"]).stem
        try:
            with Image.open(folder / "rgb" / f["file"]) as im:
                c = np.asarray(im.convert("RGB"))
            with Image.open(folder / "depth" / f"{stem}.png") as im:
                im.load()
                d = np.asarray(im)
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise DatasetError(f"{folder}: frame {f['file']} is missing or unreadable ({err})") from None
        if c.shape != (H, W, 3) or d.shape != (H, W) or d.dtype not in (np.uint16, np.int32):
            raise DatasetError(f"{folder}: frame {f['file']} is not {W}x{H} colour with 16-bit depth")
        fx, fy, cx, cy = f["K"]
        rgb.append(c)
        depth.append(d.astype(np.float32) / 1000.0)
        Ks.append([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    return FramePool(torch.from_numpy(np.stack(rgb)), torch.from_numpy(np.stack(depth)),
                     torch.tensor(Ks, dtype=torch.float64), [f["name"] for f in meta["frames"]],
                     [f["source"] for f in meta["frames"]])
