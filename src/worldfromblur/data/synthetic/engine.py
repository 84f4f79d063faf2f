"""Render one synthetic training sample: a hand-held exposure in a procedural room, integrated sub-frame by sub-frame.

Motion model. Each sample draws a *shake level* s in [0, 1] (density 2s) and from it an angular speed (log-uniform between the
``rot_speed`` bounds, deg/s) and a linear speed (log-uniform between the ``trans_speed`` bounds, m/s), each jittered,
with random directions (roll weaker than pitch and yaw, as for a hand-held camera), a random acceleration and a
6-12 Hz tremor. The camera's motion relative to the reference instant is ``r(t)``, ``c(t)`` (rotation vector and
position in the reference camera's frame); the pose of instant ``t`` in the package convention is
``T(t) = [R(r)^T | -R(r)^T c]``. The exposure spans ``2n + 1`` frame instants at ``fps``; between two frame instants
the pose parameters (u, v) of ``T`` are interpolated linearly, exactly as
:func:`worldfromblur.geometry.interpolate_trajectory` does.

Exposure. The blur is the average of ``2n * subframes + 1`` equally weighted instants. ``subframes`` is chosen per
sample so that no pixel of the reference frame moves more than ``subframe_px`` pixels between two instants (capped at
``max_subframes``): a still camera costs 7 renders, strong shake up to ``6 * max_subframes + 1``. Each instant is
rendered exactly and clipped to the sensor's range; the instants are averaged in linear light (or as sRGB values,
the paper's way, with ``averaging="srgb"``). Optional noise is added to the blurred image only.

Rooms by use. Every random choice comes from ``numpy.random.default_rng(key)``, and the key names its use in its
third word (:data:`KEYS`): a dataset's room ``[seed, scene, 0]``, its cameras and motions ``[seed, scene, 1, index]``;
a frame pool's room ``[seed, index, 3, attempt]``, camera ``[seed, index, 2, attempt]`` and lens ``[seed, index, 9]``;
the blur stream's new rooms ``[seed, step, 4, ...]`` and cameras ``[seed, step, 5, ...]``. Seeds and indices are
whole numbers below 2**32 (one 32-bit word each, :func:`check_seed`), so the words of a pool key and of a dataset key
differ in the third place whatever the seeds: no pool can build a room of any dataset, and a test set rendered with
``wfb make-dataset synthetic`` is never in a ``synthetic:N`` training pool.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ...imaging import Exposure, linear_to_srgb, srgb_to_linear, to_uint8
from ..cameras import NYU_KINECT_RGB, interpolate_poses_uv, rotation_matrix, scale_intrinsics_np, steps_per_frame
from ..exposure import choose_subframes
from .scene import camera_rotation, inside_any, make_scene, raycast, raycast_depth
from .textures import Texture

KEYS = {"dataset room": 0, "dataset camera and motion": 1, "pool camera": 2, "pool room": 3, "stream room": 4,
        "stream camera": 5, "pool textures": 6, "dataset textures": 7, "stream textures": 8, "pool lens": 9}
"""The third word of every generator key, by use (see the module docstring)."""
SEED_LIMIT = 2**32


def check_seed(seed: int, what: str = "seed") -> int:
    """``seed`` if it is a whole number in [0, 2**32), else a ValueError naming ``what``: one 32-bit word, so that a
    generator key's third word always names its use."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"{what} must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}")
    return int(seed)


@dataclass
class SyntheticOptions(Exposure):
    """Everything that decides what a synthetic build contains (saved in the dataset; a resume must match): the
    exposure (:class:`~worldfromblur.imaging.Exposure`) and these."""

    width: int = 320
    height: int = 240
    intrinsics: list[float] | None = None  # fx fy cx cy in pixels of width x height; None = NYU Kinect, scaled
    rot_speed: tuple[float, float] = (1.0, 60.0)  # deg/s, log-uniform over the shake level
    trans_speed: tuple[float, float] = (0.02, 0.6)  # m/s
    noise: float = 0.0  # std of shot-plus-read noise, see render_sample
    psf_sigma: float = 0.5  # optical blur of every rendered instant, pixels
    samples_per_scene: int = 4
    keep_frames: bool = False
    textures: str | None = None  # folder of photographs to use as textures
    texture_rooms: int = 0  # rooms (scenes) per texture bank of 48; 0: one bank for the whole build (TextureBanks)
    focal_range: tuple[float, float] | None = None
    """Pool frames (``render_still``) only: each frame's focal length is K's times a factor drawn log-uniformly from
    this range (per frame, from its own key, :func:`frame_K`), so that a pool spans fields of view; None: K's."""

    def K(self) -> np.ndarray:
        if self.intrinsics is not None:
            fx, fy, cx, cy = self.intrinsics
            return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
        K, (w0, h0) = NYU_KINECT_RGB
        return scale_intrinsics_np(K, self.width / w0, self.height / h0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rot_speed"], d["trans_speed"] = list(self.rot_speed), list(self.trans_speed)
        if not self.texture_rooms:  # the default: builds made before the option existed keep their stamp
            del d["texture_rooms"]
        if self.focal_range is None:
            del d["focal_range"]
        else:
            d["focal_range"] = list(self.focal_range)
        return d


@dataclass
class RenderedSample:
    blurred: np.ndarray  # (H, W, 3) uint8 sRGB
    sharp: np.ndarray  # (H, W, 3) uint8 sRGB, the reference instant
    depth: np.ndarray  # (H, W) float64 metres
    poses: np.ndarray  # (2n, 4, 4) reference-to-instant, time order, reference excluded
    K: np.ndarray  # (3, 3)
    subframes: int
    frames: np.ndarray | None  # (2n + 1, H, W, 3) uint8 when kept
    stats: dict = field(default_factory=dict)


def draw_motion(rng: np.random.Generator, opts: SyntheticOptions) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose parameters (u, v), each (2n + 1, 3), of the frame instants, and the shake level."""
    n = opts.n
    t = (np.arange(2 * n + 1) - n) / opts.fps
    level = float(np.sqrt(rng.random()))  # density 2s: near-still exposures occur, shaken ones dominate

    def speed(lo_hi):
        lo, hi = np.log(lo_hi[0]), np.log(lo_hi[1])
        return float(np.exp(np.clip(lo + level * (hi - lo) + rng.normal(0, 0.3), lo, hi)))

    def path(mag: float, axis_scale) -> np.ndarray:
        direction = rng.normal(0, axis_scale)
        vel = mag * direction / max(np.linalg.norm(direction), 1e-12)
        acc = mag * rng.normal(0, 3.0, 3)  # changes speed over about a third of a second
        f_tremor, phase = rng.uniform(6, 12), rng.uniform(0, 2 * np.pi)
        amp = mag * rng.uniform(0, 0.3) / (2 * np.pi * f_tremor) * rng.normal(0, 1, 3)
        tremor = amp * (np.sin(2 * np.pi * f_tremor * t + phase) - np.sin(phase))[:, None]
        return vel * t[:, None] + 0.5 * acc * t[:, None] ** 2 + tremor

    r = path(np.deg2rad(speed(opts.rot_speed)), [1.0, 1.0, 0.4])  # pitch, yaw dominate hand shake
    c = path(speed(opts.trans_speed), [1.0, 1.0, 0.7])
    # T(t) = [R(r)^T | -R(r)^T c]: u = -r exactly, v = -R(r)^T c.
    u = -r
    v = -np.einsum("kji,kj->ki", rotation_matrix(r), c)
    return u, v, level


def place_camera(rng: np.random.Generator, scene, K: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """A camera pose inside the room, not in an object, with nothing closer than 0.35 m in view (a strided depth
    probe: the room needs no textures to be placed in)."""
    room = scene.room
    stride = max(min(H, W) // 24, 1)
    for _ in range(50):
        yaw = rng.uniform(0, 2 * np.pi)
        if scene.objects and rng.random() < 0.4:  # look at an object from close by
            target = scene.objects[int(rng.integers(len(scene.objects)))].center
            C = target - rng.uniform(0.6, 2.5) * np.array([np.sin(yaw), 0, np.cos(yaw)])
            C[1] = -rng.uniform(0.9, 1.8)
            pitch = np.arctan2(target[1] - C[1], np.hypot(target[0] - C[0], target[2] - C[2]))
        else:
            C = np.array([rng.uniform(-room.half_x + 0.3, room.half_x - 0.3), -rng.uniform(1.0, 1.8),
                          rng.uniform(-room.half_z + 0.3, room.half_z - 0.3)])
            pitch = np.deg2rad(rng.uniform(-10, 30))
        if abs(C[0]) > room.half_x - 0.3 or abs(C[2]) > room.half_z - 0.3 or inside_any(scene, C, 0.3):
            continue
        R = camera_rotation(yaw, pitch + np.deg2rad(rng.normal(0, 5)), np.deg2rad(rng.normal(0, 3)))
        if raycast_depth(scene, R, C, K, H, W, stride=stride).min() >= 0.35:
            return R, C
    raise RuntimeError("could not place a camera in this scene")  # practically unreachable


def optics(linear: np.ndarray, sigma: float) -> np.ndarray:
    """The lens and sensor's point spread: a small Gaussian (sigma in pixels) on an (H, W, 3) linear image.

    Rendering samples each pixel at its centre, which leaves stair-stepped edges; real optics do not.
    """
    if sigma <= 0:
        return linear
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(linear.dtype)
    pad = np.pad(linear, ((r, r), (r, r), (0, 0)), mode="edge")
    rows = sum(w * pad[i : i + linear.shape[0]] for i, w in enumerate(k))
    return sum(w * rows[:, i : i + linear.shape[1]] for i, w in enumerate(k))


def auto_exposure(radiance: np.ndarray) -> float:
    """Gain that maps the 60th percentile of a linear radiance image to 0.25 (highlights may clip)."""
    return 0.25 / max(float(np.percentile(radiance.mean(-1), 60)), 1e-4)


def room_and_camera(use: str, seed: int, index: int, bank_size: int, K: np.ndarray, H: int, W: int,
                    *key: int) -> tuple:
    """A room whose surfaces use a bank of ``bank_size`` textures and a camera placed in it (``(scene, R_wc, C)``)
    for a frame of ``use`` ("pool" or "stream"), from the generator keys ``[seed, index, KEYS[use + " room"], *key,
    attempt]`` (and the camera's); a crowded room can leave no free spot for the camera, and then the next attempt
    draws another room. NumPy only, and no textures: it can run in another process (``RoomSampler(workers=...)``)."""
    for attempt in range(20):
        scene = make_scene(np.random.default_rng([seed, index, KEYS[f"{use} room"], *key, attempt]), bank_size)
        try:
            rng = np.random.default_rng([seed, index, KEYS[f"{use} camera"], *key, attempt])
            return (scene, *place_camera(rng, scene, K, H, W))
        except RuntimeError:
            continue
    raise RuntimeError(f"could not place a camera in 20 rooms for {use} frame {(index, *key)} of seed {seed}")


def check_focal_range(focal_range) -> tuple[float, float] | None:
    """``focal_range`` as a (lo, hi) pair of factors with 0 < lo <= hi, or None; else a ValueError that says so."""
    if focal_range is None:
        return None
    try:
        lo, hi = (float(f) for f in focal_range)
    except (TypeError, ValueError):
        raise ValueError(f"focal_range must be two factors [lo, hi], got {focal_range!r}") from None
    if not (0 < lo <= hi and np.isfinite(hi)):
        raise ValueError(f"focal_range must be factors [lo, hi] with 0 < lo <= hi, got {focal_range!r}")
    return lo, hi


def frame_K(seed: int, index: int, opts: SyntheticOptions) -> np.ndarray:
    """The intrinsics of pool frame ``index``: ``opts.K()``, its focal lengths times a factor drawn log-uniformly
    from ``opts.focal_range`` with the key ``[seed, index, KEYS["pool lens"]]`` (principal point kept)."""
    K = opts.K()
    if opts.focal_range is not None:
        lo, hi = check_focal_range(opts.focal_range)
        f = np.exp(np.random.default_rng([seed, index, KEYS["pool lens"]]).uniform(np.log(lo), np.log(hi)))
        K[0, 0] *= f
        K[1, 1] *= f
    return K


def render_still(seed: int, index: int, opts: SyntheticOptions, bank: list[Texture]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sharp frame of a procedural room and its exact z-depth: ``(rgb (H, W, 3) uint8 sRGB, depth (H, W) metres,
    K)``. A pure function of (seed, index); each index is its own room, seen through :func:`frame_K`. One render
    instead of an exposure's dozens: the on-the-fly blur stream (:mod:`worldfromblur.data.stream`) makes the blur
    from it."""
    seed, index = check_seed(seed), check_seed(index, "frame index")
    H, W, K = opts.height, opts.width, frame_K(seed, index, opts)
    scene, R_wc, C = room_and_camera("pool", seed, index, len(bank), K, H, W)
    radiance, depth = raycast(scene, bank, R_wc, C, K, H, W)
    linear = np.clip(optics(radiance * np.float32(auto_exposure(radiance)), opts.psf_sigma), 0, 1)
    return to_uint8(linear_to_srgb(linear.astype(np.float64))), depth.astype(np.float64), K


def _sensor_noise(mean: np.ndarray, rng: np.random.Generator, opts: SyntheticOptions) -> np.ndarray:
    """The exposure's mean (linear, or sRGB for the paper's averaging) with shot and read noise of ``opts.noise``."""
    if opts.noise <= 0:
        return mean
    lin = mean if opts.averaging == "linear" else srgb_to_linear(mean)
    lin = lin + rng.normal(0, 1, lin.shape) * opts.noise * np.sqrt(0.2 + lin)
    return lin if opts.averaging == "linear" else linear_to_srgb(lin)


def render_sample(seed: int, index: int, opts: SyntheticOptions, bank: list[Texture]) -> RenderedSample:
    """Render sample ``index`` of the build with ``seed``; depends on nothing else, so builds are reproducible."""
    scene_id, _ = divmod(check_seed(index, "sample index"), opts.samples_per_scene)
    seed = check_seed(seed)
    scene = make_scene(np.random.default_rng([seed, scene_id, KEYS["dataset room"]]), len(bank))
    rng = np.random.default_rng([seed, scene_id, KEYS["dataset camera and motion"], index])
    H, W = opts.height, opts.width
    K = opts.K()
    R_wc, C = place_camera(rng, scene, K, H, W)

    u, v, level = draw_motion(rng, opts)
    n = opts.n
    radiance_ref, depth = raycast(scene, bank, R_wc, C, K, H, W)
    depth = depth.astype(np.float64)
    T = np.zeros((2 * n + 1, 4, 4))
    T[:, :3, :3], T[:, :3, 3], T[:, 3, 3] = rotation_matrix(u), v, 1.0
    poses = np.delete(T, n, axis=0)
    subframes, blur_stats = choose_subframes(depth, poses, K, opts.subframe_px, opts.max_subframes)

    exposure = auto_exposure(radiance_ref)

    def expose(radiance: np.ndarray) -> np.ndarray:
        return np.clip(optics(radiance * np.float32(exposure), opts.psf_sigma), 0, 1)

    instants = interpolate_poses_uv(T, subframes)
    acc = np.zeros((H, W, 3), np.float32)
    keep = [] if opts.keep_frames else None
    sharp_lin = expose(radiance_ref)
    for i, T_k in enumerate(instants):
        if i == n * subframes:
            lin = sharp_lin
        else:  # T_k = [R_k | t_k]; camera-to-world = R_wc R_k^T, centre C - R_wc R_k^T t_k
            R_w = R_wc @ T_k[:3, :3].T
            lin = expose(raycast(scene, bank, R_w, C - R_w @ T_k[:3, 3], K, H, W)[0])
        acc += lin if opts.averaging == "linear" else linear_to_srgb(lin)
        if keep is not None and i % subframes == 0:
            keep.append(to_uint8(linear_to_srgb(lin.astype(np.float64))))
    mean = _sensor_noise(acc.astype(np.float64) / len(instants), rng, opts)
    blurred = linear_to_srgb(mean) if opts.averaging == "linear" else mean
    sharp = to_uint8(linear_to_srgb(sharp_lin.astype(np.float64)))

    stats = {
        "shake_level": float(level),
        **steps_per_frame(T),
        **blur_stats,
        "depth_min_m": float(depth.min()),
        "depth_max_m": float(depth.max()),
    }
    return RenderedSample(
        blurred=to_uint8(blurred),
        sharp=sharp,
        depth=depth,
        poses=poses,
        K=K,
        subframes=subframes,
        frames=np.stack(keep) if keep is not None else None,
        stats=stats,
    )
