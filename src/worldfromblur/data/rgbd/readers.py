"""Reading RGB-D sequences in their original formats: TUM RGB-D, ICL-NUIM, NYU Depth v2 (raw), 7-Scenes, and frame
folders (``color/``, ``depth/``, ``pose/``).

Each reader returns a :class:`Sequence`: frames in time order, each with its colour file, its depth file (or none),
and its camera-to-world pose where the dataset has ground truth, expressed in the package's camera convention
(OpenCV axes, see :mod:`worldfromblur.geometry`), and the colour camera's intrinsics. Depth is read as z-depth in
metres, registered to the colour camera.

* **TUM RGB-D**: ``rgb.txt`` and ``depth.txt`` (``timestamp filename``), ``groundtruth.txt`` (``timestamp tx ty tz qx
  qy qz qw``, camera-to-world, about 100 Hz), 16-bit PNG depth / 5000. Depth is associated to each colour frame by
  the nearest timestamp (within ``max_dt``), the ground truth is interpolated to the colour frame's time (linear in
  position, spherical in rotation) between the two samples around it (at most ``max_gt_gap`` apart). The
  published intrinsics of the freiburg1/2/3 cameras are chosen from the sequence's name, or given.
* **ICL-NUIM**, TUM-compatible release: the same layout (or ``associations.txt`` with a ``*.gt.freiburg`` trajectory),
  depth / 5000, and intrinsics fx = 481.2, **fy = -480**, cx = 319.5, cy = 239.5. The negative fy means the
  dataset's camera y axis points *up* (a left-handed camera frame, as POV-Ray renders). We flip it: with
  F = diag(1, -1, 1), points become F X, intrinsics get fy = +480, and every relative pose T becomes F T F, which is
  a proper rotation again. Depth that is distance along the ray (the original release) is converted to z with
  ``depth_is_ray_distance=True``.
* **NYU Depth v2 raw**: scene folders of ``r-<time>-<id>.ppm`` colour and ``d-<time>-<id>.pgm`` depth frames; each
  depth frame is paired with the colour frame nearest in time (as the toolbox's ``get_synched_frames.m`` does;
  repeated colour frames keep their closest depth). Depth values are the Kinect's raw 11-bit disparity. The PGM
  header announces 16-bit big-endian samples, but the toolbox reads them with ``imread`` and then ``swapbytes``,
  so the samples are little-endian in fact; we read them the toolbox's way (``pgm_byte_order="little"``). Raw values
  become metres as ``351.3 / (1092.5 - raw)`` (``depth_rel2depth_abs.m``; raw < 600 or 2047 means no reading,
  depth capped at 10 m) and are registered to the colour camera with the toolbox's calibration
  (``camera_params.m``, ``project_depth_map.m``): back-projected with the depth camera's intrinsics, moved into the
  colour camera's frame, projected with the colour intrinsics and z-buffered. Lens distortion is not corrected.
  NYU has no ground-truth poses: the builder estimates them (:mod:`worldfromblur.data.rgbd.odometry`).
* **Microsoft 7-Scenes** (one ``seq-NN`` folder, or the 1,000-frame excerpt in ``andyzeng/tsdf-fusion-python``):
  ``frame-NNNNNN.color.png|jpg``, ``frame-NNNNNN.depth.png`` (16-bit millimetres, 0 or 65535 = no reading) and
  ``frame-NNNNNN.pose.txt`` (4 x 4 camera-to-world, KinectFusion tracking). Intrinsics come from
  ``camera-intrinsics.txt`` beside the frames when present, else the nominal fx = fy = 585, cx = 320, cy = 240.
  Frames are 30 Hz; ``frames=(first, last)`` keeps a range of frame numbers (inclusive), so that one sequence can
  give disjoint training, validation and test parts.
* **Frame folders** (``folders``): ``color/NNNNN.jpg|png``, ``depth/NNNNN.png`` (16-bit, millimetres unless told,
  0 = no reading) and ``pose/NNNNN.txt`` (4 x 4 camera-to-world, OpenCV axes) matched by their number, one file per
  frame, with the intrinsics in ``camera-intrinsics.txt`` (3 x 3) or ``intrinsic/intrinsic_color.txt`` (4 x 4, as
  ScanNet's exporter writes it). The layout of the TSDF-fusion demos and of ScanNet's exported frames; the
  Augmented ICL-NUIM living room copied into ``renezurbruegg/SemanticInstanceFusion`` comes this way. Depth must
  have the colour images' size (it is taken as registered to colour); frames are 30 Hz unless told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..cameras import matrix_to_quat, quat_to_matrix
from ..format import DatasetError

# Published intrinsics (the TUM benchmark's "calibrated" values, pixel centres at integer coordinates).
TUM_CAMERAS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
TUM_DEPTH_SCALE = 5000.0
ICL_INTRINSICS = (481.20, -480.00, 319.50, 239.50)
SEVEN_SCENES_INTRINSICS = (585.0, 585.0, 320.0, 240.0)
SEVEN_SCENES_DEPTH_SCALE = 1000.0
_SEVEN_SCENES_NAME = re.compile(r"^frame-(\d+)\.color\.(png|jpg)$")
FLIP_Y = np.diag([1.0, -1.0, 1.0, 1.0])

# NYU Depth v2 toolbox, camera_params.m. Principal points there are 1-based (MATLAB); here they are 0-based.
NYU_RGB = (5.1885790117450188e02, 5.1946961112127485e02, 3.2558244941119034e02 - 1, 2.5373616633400465e02 - 1)
NYU_DEPTH = (5.8262448167737955e02, 5.8269103270988637e02, 3.1304475870804731e02 - 1, 2.3844389626620386e02 - 1)
_NYU_R_LISTED = np.array([
    9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03,
    -5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03,
    -4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01]).reshape(3, 3)
_NYU_T = (2.5031875059141302e-02, 6.6238747008330102e-04, -2.9342312935846411e-04)  # t_x, t_y, t_z
# depth_world2rgb_world.m computes R P + [t_x; t_z; t_y] with R = inv(R0'), R0 = -reshape(listed, 3, 3) (column-major),
# i.e. R = -inv(listed as rows). A projection cannot tell P from -P, so the same pixels come from the proper rigid
# motion P_rgb = inv(listed) P - [t_x, t_z, t_y], which is what we apply.
NYU_DEPTH_TO_RGB = np.eye(4)
NYU_DEPTH_TO_RGB[:3, :3] = np.linalg.inv(_NYU_R_LISTED)
NYU_DEPTH_TO_RGB[:3, 3] = -np.array([_NYU_T[0], _NYU_T[2], _NYU_T[1]])
NYU_DISPARITY = (351.3, 1092.5)
NYU_MAX_DEPTH = 10.0


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class Frame:
    time: float
    rgb: Path
    depth: Path | None
    pose: np.ndarray | None = None  # (4, 4) camera-to-world, package convention; None where unknown


@dataclass
class Sequence:
    """One recording, ready for windowing."""

    name: str
    root: Path
    kind: str  # "tum", "icl" or "nyu"
    frames: list[Frame]
    K: np.ndarray  # colour camera, pixels of the colour images
    size: tuple[int, int]  # colour image (W, H)
    options: dict = field(default_factory=dict)  # how depth is read (see load_depth)

    @property
    def fps(self) -> float:
        dt = np.diff([f.time for f in self.frames])
        return float(1.0 / np.median(dt)) if len(dt) else 30.0


# ------------------------------------------------------------------------------------------------- text files


def read_list(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each row of a whitespace-separated text file with ``#`` comments; each row must have
    ``columns`` fields at least."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file; is {path.parent} a sequence in this format?")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < columns:
            raise DatasetError(f"{path}:{number}: expected {columns} fields, got {len(parts)}: {line[:60]!r}")
        rows.append((number, parts))
    if not rows:
        raise DatasetError(f"{path}: no entries")
    return rows


def _float(value: str, path: Path, number: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DatasetError(f"{path}:{number}: {value!r} is not a number") from None
    if not np.isfinite(x):
        raise DatasetError(f"{path}:{number}: {value!r} is not a finite number")
    return x


def read_timed_files(path: Path) -> list[tuple[float, Path]]:
    """``timestamp filename`` lines (TUM's rgb.txt, depth.txt), checked to be in increasing time order."""
    out = [(_float(r[0], path, number), path.parent / r[1]) for number, r in read_list(path, 2)]
    _check_increasing([t for t, _ in out], path)
    return out


def _check_increasing(times: list[float], path: Path) -> None:
    bad = np.flatnonzero(np.diff(times) <= 0)
    if len(bad):
        i = int(bad[0])
        raise DatasetError(f"{path}: timestamps out of order at entry {i + 2} ({times[i + 1]} after {times[i]}); "
                           "sort the file by time")


def read_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``timestamp tx ty tz qx qy qz qw`` lines: times (N,) and camera-to-world poses (N, 4, 4), in file convention."""
    values = np.array([[_float(x, path, number) for x in r[:8]] for number, r in read_list(path, 8)])
    _check_increasing(list(values[:, 0]), path)
    q = values[:, [7, 4, 5, 6]]  # w, x, y, z
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    if (norm < 1e-6).any():
        i = int(np.flatnonzero(norm[:, 0] < 1e-6)[0])
        raise DatasetError(f"{path}: entry {i + 1} has a zero quaternion")
    T = np.tile(np.eye(4), (len(values), 1, 1))
    T[:, :3, :3] = quat_to_matrix(q / norm)
    T[:, :3, 3] = values[:, 1:4]
    return values[:, 0], T


def interpolate_poses(times: np.ndarray, poses: np.ndarray, t: float, max_gap: float) -> np.ndarray | None:
    """The pose at time ``t`` between the two ground-truth samples around it (linear position, spherical rotation),
    or None when ``t`` is outside the trajectory or the samples around it are more than ``max_gap`` apart."""
    j = int(np.searchsorted(times, t))
    if j < len(times) and abs(times[j] - t) < 1e-9:
        return poses[j].copy()
    if j == 0 or j == len(times) or times[j] - times[j - 1] > max_gap:
        return None
    a = (t - times[j - 1]) / (times[j] - times[j - 1])
    q0, q1 = matrix_to_quat(poses[[j - 1, j], :3, :3])
    if np.dot(q0, q1) < 0:
        q1 = -q1
    angle = np.arccos(np.clip(np.dot(q0, q1), -1.0, 1.0))
    if angle < 1e-8:
        q = q0
    else:
        q = (np.sin((1 - a) * angle) * q0 + np.sin(a * angle) * q1) / np.sin(angle)
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix((q / np.linalg.norm(q))[None])[0]
    out[:3, 3] = (1 - a) * poses[j - 1, :3, 3] + a * poses[j, :3, 3]
    return out


def nearest(times: np.ndarray, t: float) -> tuple[int, float]:
    """Index of the entry of sorted ``times`` nearest to ``t``, and the time difference."""
    j = int(np.searchsorted(times, t))
    best = min((k for k in (j - 1, j) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t))
    return best, abs(float(times[best]) - t)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from None


# ------------------------------------------------------------------------------------------------- TUM and ICL-NUIM


def tum_camera(root: Path, camera: str | None) -> tuple[float, float, float, float]:
    name = camera or next((k for k in TUM_CAMERAS if k in root.resolve().name.lower()
                           or k.replace("freiburg", "fr") in root.resolve().name.lower()), None)
    if name is None:
        raise DatasetError(f"{root}: cannot tell the camera from the sequence name; pass --camera "
                           f"{'|'.join(TUM_CAMERAS)} or --intrinsics FX FY CX CY")
    key = name if name in TUM_CAMERAS else name.replace("fr", "freiburg")
    if key not in TUM_CAMERAS:
        raise DatasetError(f"unknown --camera {name!r}; choose one of {', '.join(TUM_CAMERAS)}")
    return TUM_CAMERAS[key]


def _timed_sequence(root: Path, kind: str, rgb: list[tuple[float, Path]], depth: list[tuple[float, Path]] | None,
                    gt: tuple[np.ndarray, np.ndarray] | None, K: np.ndarray, max_dt: float, max_gt_gap: float,
                    to_package, options: dict) -> Sequence:
    d_times = np.array([t for t, _ in depth]) if depth else None
    frames = []
    for t, rgb_path in rgb:
        depth_path = None
        if depth:
            j, dt = nearest(d_times, t)
            depth_path = depth[j][1] if dt <= max_dt else None
        pose = interpolate_poses(gt[0], gt[1], t, max_gt_gap) if gt is not None else None
        frames.append(Frame(t, rgb_path, depth_path, to_package(pose) if pose is not None else None))
    return Sequence(root.resolve().name, root, kind, frames, K, _image_size(frames[0].rgb), options)


def tum_sequence(root: Path, camera: str | None = None, intrinsics=None, max_dt: float = 0.02,
                 max_gt_gap: float = 0.05, require_poses: bool = True) -> Sequence:
    """A TUM RGB-D sequence folder (see the module docstring). With ``require_poses=False`` a folder without
    ``groundtruth.txt`` reads too, its frames without poses (enough for a frame pool or for RGB-D odometry)."""
    root = Path(root)
    rgb = read_timed_files(root / "rgb.txt")
    depth = read_timed_files(root / "depth.txt")
    has_gt = require_poses or (root / "groundtruth.txt").is_file()
    gt = read_trajectory(root / "groundtruth.txt") if has_gt else None
    K = intrinsics_matrix(*(intrinsics if intrinsics is not None else tum_camera(root, camera)))
    return _timed_sequence(root, "tum", rgb, depth, gt, K, max_dt, max_gt_gap, lambda T: T,
                           {"depth_scale": TUM_DEPTH_SCALE})


def icl_sequence(root: Path, intrinsics=None, handle_fy_sign: bool = True, depth_is_ray_distance: bool = False,
                 max_dt: float = 0.02, max_gt_gap: float = 0.05) -> Sequence:
    """An ICL-NUIM sequence in its TUM-compatible release (see the module docstring).

    ``handle_fy_sign=False`` reads the poses as if fy were positive: wrong, kept to show that it fails the checks.
    """
    root = Path(root)
    fx, fy, cx, cy = intrinsics if intrinsics is not None else ICL_INTRINSICS
    if (root / "rgb.txt").is_file():
        rgb, depth = read_timed_files(root / "rgb.txt"), read_timed_files(root / "depth.txt")
        gt = read_trajectory(root / "groundtruth.txt")
    else:  # associations.txt: "t_depth depth/N.png t_rgb rgb/N.png", trajectory in *.gt.freiburg
        path = root / "associations.txt"
        rows = read_list(path, 4)
        depth = [(_float(r[0], path, number), root / r[1]) for number, r in rows]
        rgb = [(_float(r[2], path, number), root / r[3]) for number, r in rows]
        _check_increasing([t for t, _ in rgb], path)
        found = sorted(root.glob("*.gt.freiburg"))
        if not found:
            raise DatasetError(f"{root}: no groundtruth.txt and no *.gt.freiburg trajectory; an ICL-NUIM sequence needs one")
        gt = read_trajectory(found[0])
    flip = handle_fy_sign and fy < 0
    K = intrinsics_matrix(fx, abs(fy), cx, cy)  # without the flip, the sign is simply dropped (the wrong reading)
    to_package = (lambda T: FLIP_Y @ T @ FLIP_Y) if flip else (lambda T: T)
    return _timed_sequence(root, "icl", rgb, depth, gt, K, max_dt, max_gt_gap, to_package,
                           {"depth_scale": TUM_DEPTH_SCALE, "ray_distance": depth_is_ray_distance})


# ------------------------------------------------------------------------------------------------- 7-Scenes


def _numbered(folder: Path, pattern: re.Pattern, frames: tuple[int, int] | None, what: str) -> list[tuple[int, Path]]:
    """(number, path) of the files of ``folder`` whose names ``pattern`` matches (group 1: the frame number), in
    order, within ``frames`` = (first, last) when given; none is an error naming ``what`` was looked for."""
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name)))
    if frames is not None:
        found = [(i, p) for i, p in found if frames[0] <= i <= frames[1]]
    if not found:
        where = f" in frames {frames[0]}..{frames[1]}" if frames is not None else ""
        raise DatasetError(f"{folder}: no {what}{where}")
    return found


def _read_intrinsics(path: Path, shape: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) of a text file holding a ``shape`` (3 x 3, or 4 x 4) camera matrix; None where there is no
    file."""
    if not path.is_file():
        return None
    try:
        M = np.loadtxt(path).reshape(shape)
    except ValueError as err:
        raise DatasetError(f"{path}: expected a {shape[0]} x {shape[1]} matrix ({err})") from None
    return float(M[0, 0]), float(M[1, 1]), float(M[0, 2]), float(M[1, 2])


def _read_pose(path: Path) -> np.ndarray | None:
    """A 4 x 4 camera-to-world matrix from a text file; None where there is no file or it is not finite (7-Scenes
    marks frames that tracking lost with inf)."""
    if not path.is_file():
        return None
    try:
        pose = np.loadtxt(path).reshape(4, 4)
    except ValueError as err:
        raise DatasetError(f"{path}: expected a 4 x 4 camera-to-world matrix ({err})") from None
    return pose if np.isfinite(pose).all() else None


def sevenscenes_sequence(root: Path, frames: tuple[int, int] | None = None, intrinsics=None) -> Sequence:
    """A 7-Scenes sequence folder (see the module docstring); ``frames`` = (first, last) frame numbers, inclusive."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; give a 7-Scenes sequence folder (frame-*.color.png|jpg files)")
    found = _numbered(root, _SEVEN_SCENES_NAME, frames, "frame-NNNNNN.color.png|jpg colour frames")
    if intrinsics is None:
        intrinsics = _read_intrinsics(root / "camera-intrinsics.txt", (3, 3)) or SEVEN_SCENES_INTRINSICS
    out = []
    for i, rgb in found:
        stem = rgb.name.split(".color.")[0]
        depth = root / f"{stem}.depth.png"
        out.append(Frame(i / 30.0, rgb, depth if depth.is_file() else None, _read_pose(root / f"{stem}.pose.txt")))
    return Sequence(root.resolve().name, root, "7scenes", out, intrinsics_matrix(*intrinsics), _image_size(out[0].rgb),
                    {"depth_scale": SEVEN_SCENES_DEPTH_SCALE, "invalid": 65535})


# ------------------------------------------------------------------------------------------------- frame folders

FOLDERS_DEPTH_SCALE = 1000.0
_FOLDER_NAME = re.compile(r"^(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def _folder_intrinsics(root: Path) -> tuple[float, float, float, float]:
    for name, shape in (("camera-intrinsics.txt", (3, 3)), ("intrinsic/intrinsic_color.txt", (4, 4))):
        found = _read_intrinsics(root / name, shape)
        if found is not None:
            return found
    raise DatasetError(f"{root}: no camera-intrinsics.txt or intrinsic/intrinsic_color.txt; give --intrinsics FX FY CX CY")


def folders_sequence(root: Path, frames: tuple[int, int] | None = None, intrinsics=None, fps: float = 30.0,
                     depth_scale: float = FOLDERS_DEPTH_SCALE) -> Sequence:
    """A frame-folder sequence (see the module docstring); ``frames`` = (first, last) frame numbers, inclusive."""
    root = Path(root)
    colour = root / "color"
    if not colour.is_dir():
        raise DatasetError(f"{root}: no color/ folder; a frame-folder sequence holds color/, depth/ and pose/")
    found = _numbered(colour, _FOLDER_NAME, frames, "numbered colour frames (NNNNN.jpg|png)")
    if not fps > 0:
        raise DatasetError(f"{root}: the frame rate must be positive, got {fps}")
    K = intrinsics_matrix(*(intrinsics if intrinsics is not None else _folder_intrinsics(root)))
    size = _image_size(found[0][1])
    out = []
    for i, rgb in found:
        stem = rgb.stem
        depth = root / "depth" / f"{stem}.png"
        out.append(Frame(i / fps, rgb, depth if depth.is_file() else None, _read_pose(root / "pose" / f"{stem}.txt")))
    with_depth = next((f.depth for f in out if f.depth is not None), None)
    if with_depth is not None and _image_size(with_depth) != size:
        w, h = _image_size(with_depth)
        raise DatasetError(f"{with_depth}: depth is {w}x{h} but colour is {size[0]}x{size[1]}; this reader needs depth "
                           "registered to colour at its size")
    return Sequence(root.resolve().name, root, "folders", out, K, size, {"depth_scale": depth_scale})


# ------------------------------------------------------------------------------------------------- NYU raw

_NYU_NAME = re.compile(r"^([rd])-(\d+(?:\.\d+)?)-(\d+)\.(ppm|pgm)$")


def nyu_sequence(root: Path, pgm_byte_order: str = "little", max_dt: float = 0.05) -> Sequence:
    """A NYU Depth v2 raw scene folder (see the module docstring). Poses are None: the builder estimates them."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; give a NYU raw scene folder (r-*.ppm and d-*.pgm files)")
    rgb, depth = [], []
    for p in sorted(root.iterdir()):
        m = _NYU_NAME.match(p.name)
        if m:
            (rgb if m.group(1) == "r" else depth).append((float(m.group(2)), p))
    if not rgb or not depth:
        raise DatasetError(f"{root}: no r-<time>-<id>.ppm colour or d-<time>-<id>.pgm depth frames found")
    rgb.sort(key=lambda x: x[0])
    depth.sort(key=lambda x: x[0])
    r_times = np.array([t for t, _ in rgb])
    best: dict[int, tuple[float, Path]] = {}  # colour index -> (time difference, depth file)
    for t, d_path in depth:  # depth frames are primary, as in get_synched_frames.m
        j, dt = nearest(r_times, t)
        if dt <= max_dt and (j not in best or dt < best[j][0]):
            best[j] = (dt, d_path)
    frames = [Frame(rgb[j][0], rgb[j][1], best[j][1] if j in best else None) for j in range(len(rgb))]
    return Sequence(root.resolve().name, root, "nyu", frames, intrinsics_matrix(*NYU_RGB), _image_size(frames[0].rgb),
                    {"pgm_byte_order": pgm_byte_order})


# ------------------------------------------------------------------------------------------------- pixels


def read_netpbm(path: Path, byte_order: str = "big") -> np.ndarray:
    """A binary PPM (P6) or PGM (P5) file, 8 or 16 bits per sample, as uint8 or uint16 (H, W[, 3])."""
    data = Path(path).read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise DatasetError(f"{path}: truncated or invalid Netpbm header")
        fields.append(data[start:pos])
    magic = fields[0]
    if magic not in (b"P5", b"P6"):
        raise DatasetError(f"{path}: not a binary PGM/PPM file (magic {magic[:2]!r})")
    try:
        w, h, maxval = (int(x) for x in fields[1:])
    except ValueError:
        raise DatasetError(f"{path}: invalid Netpbm header") from None
    channels = 3 if magic == b"P6" else 1
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2" if byte_order == "big" else "<u2")
    need = w * h * channels * dtype.itemsize
    body = data[pos + 1 : pos + 1 + need]
    if len(body) < need:
        raise DatasetError(f"{path}: truncated ({len(body)} of {need} bytes of pixels)")
    a = np.frombuffer(body, dtype).reshape(h, w, channels) if channels == 3 else np.frombuffer(body, dtype).reshape(h, w)
    return a.astype(np.uint16 if maxval >= 256 else np.uint8)


def load_rgb(seq: Sequence, frame: Frame) -> np.ndarray:
    """(H, W, 3) uint8 colour of a frame."""
    path = frame.rgb
    if path.suffix.lower() == ".ppm":
        a = read_netpbm(path)
        if a.ndim != 3 or a.dtype != np.uint8:
            raise DatasetError(f"{path}: expected an 8-bit colour PPM")
        return a
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"{path}: unreadable colour image ({err})") from None


def nyu_raw_to_metres(raw: np.ndarray) -> np.ndarray:
    """The toolbox's depth_rel2depth_abs: raw disparity -> metres; no reading (raw < 600 or 2047) -> 0."""
    raw = raw.astype(np.float64)
    a, b = NYU_DISPARITY
    invalid = (raw < 600) | (raw >= 2047)
    with np.errstate(divide="ignore"):
        d = a / (b - raw)
    d = np.where(invalid | (d <= 0), 0.0, np.minimum(d, NYU_MAX_DEPTH))
    return d


def register_depth(depth_d: np.ndarray, rgb_size: tuple[int, int]) -> np.ndarray:
    """NYU: depth-camera depth (H, W) metres -> z-depth in the colour camera, z-buffered (project_depth_map.m)."""
    H, W = depth_d.shape
    fx, fy, cx, cy = NYU_DEPTH
    v, u = np.nonzero(depth_d > 0)
    z = depth_d[v, u]
    P = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z])
    Q = NYU_DEPTH_TO_RGB[:3, :3] @ P + NYU_DEPTH_TO_RGB[:3, 3:4]
    fx_c, fy_c, cx_c, cy_c = NYU_RGB
    uu = np.round(fx_c * Q[0] / Q[2] + cx_c).astype(int)
    vv = np.round(fy_c * Q[1] / Q[2] + cy_c).astype(int)
    Wc, Hc = rgb_size
    ok = (Q[2] > 0) & (uu >= 0) & (uu < Wc) & (vv >= 0) & (vv < Hc)
    out = np.full(Hc * Wc, np.inf)
    np.minimum.at(out, vv[ok] * Wc + uu[ok], Q[2][ok])  # the nearest surface wins
    out[~np.isfinite(out)] = 0.0
    return out.reshape(Hc, Wc)


def load_depth(seq: Sequence, frame: Frame) -> np.ndarray:
    """(H, W) z-depth of a frame in metres, registered to the colour camera, 0 = no reading."""
    path = frame.depth
    if path is None:
        raise DatasetError(f"{frame.rgb}: no depth frame within the time tolerance")
    if seq.kind == "nyu":
        raw = read_netpbm(path, seq.options.get("pgm_byte_order", "little"))
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise DatasetError(f"{path}: expected a 16-bit single-channel PGM of Kinect disparity")
        return register_depth(nyu_raw_to_metres(raw), seq.size)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            raw = np.asarray(im)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable depth image ({err})") from None
    if mode not in ("I;16", "I;16B", "I;16L", "I") or raw.ndim != 2:
        raise DatasetError(f"{path}: depth must be a 16-bit single-channel PNG, got PIL mode {mode}")
    depth = raw.astype(np.float64) / seq.options.get("depth_scale", TUM_DEPTH_SCALE)
    if "invalid" in seq.options:
        depth[raw == seq.options["invalid"]] = 0.0
    if seq.options.get("ray_distance"):
        H, W = depth.shape
        K = seq.K
        v, u = np.mgrid[0:H, 0:W]
        depth = depth / np.sqrt(1 + ((u - K[0, 2]) / K[0, 0]) ** 2 + ((v - K[1, 2]) / K[1, 1]) ** 2)
    return depth
