"""The on-disk dataset layout shared by every builder (synthetic, TUM, ICL-NUIM, NYU), and its one validator.

::

    DATASET/
      manifest.json        written last: format, version, source, options, splits, scenes, skipped, statistics
      build.json           written first: what the build was asked for (a resume must ask for the same)
      samples/<id>/        one folder per sample, <id> = 6-digit index; appears only when complete
        blurred.png        8-bit sRGB, the blurred photograph
        sharp.png          8-bit sRGB, the reference (middle) instant
        depth.png          16-bit, z-depth of the reference instant in millimetres, 0 = no measurement
                           (depth.tiff, 32-bit float metres, 0 = no measurement, is read as well)
        poses.txt          2n lines of 12 numbers: rows of [R | t] (3 x 4) of the reference-to-instant poses,
                           reference excluded, in time order (see worldfromblur.geometry)
        meta.json          K, n, fps, subframes, averaging, scene, provenance, motion statistics
        frames/00.png ...  the 2n + 1 sharp frames, when the build kept them

A sample folder is written under a temporary name and renamed when complete, so a listed sample is never half
written. The manifest is written (atomically) at the end of a build; a folder with ``build.json`` but no
``manifest.json`` is an interrupted build, resumed by running the same command again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import WfbError

FORMAT_NAME = "world-from-blur dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class DatasetError(WfbError):
    """A dataset file is missing, unreadable or inconsistent; the message starts with the file's path."""


@dataclass
class SampleRecord:
    """One sample in memory, as builders produce it and :func:`read_sample` returns it."""

    blurred: np.ndarray  # (H, W, 3) uint8 sRGB
    sharp: np.ndarray  # (H, W, 3) uint8 sRGB
    depth: np.ndarray  # (H, W) float metres, 0 = no measurement
    poses: np.ndarray  # (2n, 4, 4)
    K: np.ndarray  # (3, 3)
    meta: dict = field(default_factory=dict)  # n, fps, subframes, averaging, scene, provenance, stats
    frames: np.ndarray | None = None  # (2n + 1, H, W, 3) uint8


# ------------------------------------------------------------------------------------------------- writing


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _write_json(tmp, obj)
    os.replace(tmp, path)


def _save_png(path: Path, array: np.ndarray) -> None:
    # Fixed compression settings so that the same pixels always give the same bytes.
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """z-depth in metres -> uint16 millimetres, the 16-bit depth PNGs of datasets, pools and reconstructions: rounded,
    0 where there is no finite positive depth, clipped at 65.535 m."""
    mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def write_sample(samples_dir: Path, sample_id: str, rec: SampleRecord) -> Path:
    """Write one sample folder atomically (temporary folder, then rename). Returns the final folder."""
    final = samples_dir / sample_id
    tmp = samples_dir / f".tmp-{sample_id}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _save_png(tmp / "blurred.png", rec.blurred)
    _save_png(tmp / "sharp.png", rec.sharp)
    _save_png(tmp / "depth.png", depth_to_mm(rec.depth))
    rows = "\n".join(" ".join(f"{x:.10g}" for x in T[:3].ravel()) for T in rec.poses)
    (tmp / "poses.txt").write_text(
        "# reference-to-instant poses [R | t] (3 x 4, row-major), time order, reference excluded; metres\n" + rows + "\n"
    )
    meta = dict(rec.meta)
    meta["K"] = np.asarray(rec.K, dtype=float).round(10).tolist()
    meta["size"] = [int(rec.sharp.shape[1]), int(rec.sharp.shape[0])]
    meta["has_frames"] = rec.frames is not None
    _write_json(tmp / "meta.json", meta)
    if rec.frames is not None:
        (tmp / "frames").mkdir()
        for k, frame in enumerate(rec.frames):
            _save_png(tmp / "frames" / f"{k:02d}.png", frame)
    os.replace(tmp, final)
    return final


# ------------------------------------------------------------------------------------------------- reading and validation


def _load_image(path: Path, mode: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file; rebuild this sample or remove it from the manifest")
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "RGB":
                if im.mode not in ("RGB", "RGBA", "L"):
                    raise DatasetError(f"{path}: expected an 8-bit colour image, got PIL mode {im.mode}")
                return np.asarray(im.convert("RGB"))
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable image ({err}); the file is truncated or corrupt, rebuild it") from None


def _load_depth(sample_dir: Path) -> np.ndarray:
    png, tiff = sample_dir / "depth.png", sample_dir / "depth.tiff"
    if png.is_file():
        raw = _load_image(png, "depth")
        if raw.dtype not in (np.uint16, np.int32) or raw.ndim != 2:
            raise DatasetError(f"{png}: expected a 16-bit single-channel PNG of millimetres, got {raw.dtype} {raw.shape}")
        return raw.astype(np.float64) / 1000.0
    if tiff.is_file():
        raw = _load_image(tiff, "depth")
        if raw.dtype != np.float32 or raw.ndim != 2:
            raise DatasetError(f"{tiff}: expected a 32-bit float single-channel TIFF of metres, got {raw.dtype} {raw.shape}")
        if not np.isfinite(raw).all():
            raise DatasetError(f"{tiff}: depth has NaN or infinite values; mark missing depth with 0")
        return raw.astype(np.float64)
    raise DatasetError(f"{png}: missing file (no depth.png or depth.tiff); rebuild this sample")


def _load_poses(path: Path, n_expected: int | None) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: missing pose file; rebuild this sample")
    try:
        rows = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise DatasetError(f"{path}: unparsable pose file ({err})") from None
    if rows.shape[1] != 12 or (n_expected is not None and rows.shape[0] != 2 * n_expected):
        want = f"{2 * n_expected} lines" if n_expected is not None else "2n lines"
        raise DatasetError(f"{path}: expected {want} of 12 numbers, got an array of shape {rows.shape}")
    poses = np.zeros((rows.shape[0], 4, 4))
    poses[:, :3] = rows.reshape(-1, 3, 4)
    poses[:, 3, 3] = 1.0
    return poses


def validate_sample(rec: SampleRecord, where: Path) -> None:
    """The single place that decides whether a sample is usable; raises DatasetError naming the file at fault."""
    H, W = rec.sharp.shape[:2]
    for name, img in (("blurred.png", rec.blurred), ("sharp.png", rec.sharp)):
        if img.shape != (H, W, 3):
            raise DatasetError(f"{where / name}: size {img.shape[1]}x{img.shape[0]} differs from sharp.png's {W}x{H}")
    if rec.depth.shape != (H, W):
        raise DatasetError(f"{where / 'depth.png'}: size {rec.depth.shape[::-1]} differs from sharp.png's ({W}, {H})")
    if not np.isfinite(rec.depth).all() or (rec.depth < 0).any():
        raise DatasetError(f"{where / 'depth.png'}: depth must be finite and >= 0 (0 = no measurement)")
    if (rec.depth > 0).mean() < 0.05:
        raise DatasetError(f"{where / 'depth.png'}: fewer than 5% of pixels have depth; the sample is unusable")
    P = rec.poses
    if not np.isfinite(P).all():
        raise DatasetError(f"{where / 'poses.txt'}: poses have NaN or infinite values")
    R = P[:, :3, :3]
    ortho = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max()
    if ortho > 1e-4 or (np.linalg.det(R) < 0.999).any():
        raise DatasetError(f"{where / 'poses.txt'}: rotations are not proper (|R R^T - I| = {ortho:.2g} or det < 0)")
    K = np.asarray(rec.K, dtype=float)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise DatasetError(f"{where / 'meta.json'}: K must be a finite 3x3 matrix")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0 and -W < cx < 2 * W and -H < cy < 2 * H and np.allclose(K[2], [0, 0, 1])):
        raise DatasetError(f"{where / 'meta.json'}: K is not sane for a {W}x{H} image (fx={fx}, fy={fy}, cx={cx}, cy={cy})")
    if rec.frames is not None and rec.frames.shape != (len(P) + 1, H, W, 3):
        raise DatasetError(f"{where / 'frames'}: expected {len(P) + 1} frames of {W}x{H}, got {rec.frames.shape}")


def read_sample(sample_dir: Path, load_frames: bool = False) -> SampleRecord:
    """Read and validate one sample folder."""
    sample_dir = Path(sample_dir)
    meta_path = sample_dir / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing file; rebuild this sample")
    try:
        meta = json.loads(meta_path.read_text())
        K = np.asarray(meta["K"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{meta_path}: unreadable metadata ({err})") from None
    frames = None
    if load_frames and meta.get("has_frames"):
        files = sorted((sample_dir / "frames").glob("*.png"))
        frames = np.stack([_load_image(f, "RGB") for f in files]) if files else np.zeros((0,))
    rec = SampleRecord(
        blurred=_load_image(sample_dir / "blurred.png", "RGB"),
        sharp=_load_image(sample_dir / "sharp.png", "RGB"),
        depth=_load_depth(sample_dir),
        poses=_load_poses(sample_dir / "poses.txt", meta.get("n")),
        K=K,
        meta=meta,
        frames=frames,
    )
    validate_sample(rec, sample_dir)
    return rec


def read_manifest(root: Path) -> dict:
    """The manifest of a complete dataset, or a DatasetError that says what to do."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        if (root / "build.json").is_file():
            raise DatasetError(f"{root}: the build was interrupted (no manifest.json); run the same make-dataset command again to finish it")
        if not root.exists():
            raise DatasetError(f"{root}: no such folder; build a dataset with 'wfb make-dataset'")
        raise DatasetError(f"{path}: missing; {root} is not a world-from-blur dataset (build one with 'wfb make-dataset')")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise DatasetError(f"{path}: unreadable manifest ({err})") from None
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a world-from-blur dataset manifest")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {manifest.get('version')} is newer than this package reads ({FORMAT_VERSION}); upgrade world-from-blur")
    return manifest
