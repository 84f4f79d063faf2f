"""Short RGB-D sequences with known geometry, written out in the original formats of TUM RGB-D, ICL-NUIM, NYU
Depth v2 (raw), 7-Scenes (as SUN3D excerpts come) and frame folders (color/, depth/, pose/), quirks included: depth scale 5000, ICL's negative fy, NYU's raw Kinect disparity in 16-bit PGMs
with the byte order the NYU toolbox reads, its separate depth camera, and timestamps that are not evenly spaced.

The frames are rendered exactly (ray casting) by the synthetic engine along a smooth hand-held trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worldfromblur.data.rgbd.readers import (FLIP_Y, ICL_INTRINSICS, NYU_DEPTH, NYU_DEPTH_TO_RGB, NYU_DISPARITY,
                                             NYU_RGB, TUM_CAMERAS, intrinsics_matrix)
from worldfromblur.data.cameras import matrix_to_quat, rotation_matrix
from worldfromblur.data.synthetic.engine import optics, place_camera
from worldfromblur.data.synthetic.scene import make_scene, raycast
from worldfromblur.data.synthetic.textures import make_texture_bank
from worldfromblur.imaging import linear_to_srgb

W, H = 640, 480
FPS = 30.0
T0 = 1305031102.175304


@dataclass
class Trajectory:
    """A smooth camera motion: camera-to-world pose (OpenCV axes) at any time."""

    R0: np.ndarray
    C0: np.ndarray
    omega: np.ndarray  # rad/s, in the first camera's frame
    velocity: np.ndarray  # m/s, in the first camera's frame

    def pose(self, t: float) -> np.ndarray:
        """Strongly accelerating (speed grows about fivefold over 9 frames), so that no window is the same backwards
        in time: a constant-velocity window is, and then inverted poses would blur exactly like the true ones."""
        s = t - T0
        ramp = s + 7.5 * s * s
        T = np.eye(4)
        T[:3, :3] = self.R0 @ rotation_matrix(self.omega * ramp)
        T[:3, 3] = self.C0 + self.R0 @ (self.velocity * ramp)
        return T


def _world(seed: int, K: np.ndarray):
    bank = make_texture_bank(seed)
    rng = np.random.default_rng([seed, 11])
    for attempt in range(20):
        scene = make_scene(np.random.default_rng([seed, attempt]), len(bank))
        try:
            R0, C0 = place_camera(rng, scene, K, H, W)
        except RuntimeError:
            continue
        # near enough for the Kinect's disparity quantisation to stay small: the median depth under 3 m
        if np.median(raycast(scene, bank, R0, C0, K, H, W, stride=16)[1]) < 3.0:
            return bank, scene, R0, C0
    raise RuntimeError("no usable fixture scene")


def _expose(radiance: np.ndarray, exposure: float) -> np.ndarray:
    lin = np.clip(optics(radiance * np.float32(exposure), 0.7), 0, 1)
    return np.round(linear_to_srgb(lin.astype(np.float64)) * 255).astype(np.uint8)


@dataclass
class Recording:
    times: list[float]
    rgb: list[np.ndarray]  # (H, W, 3) uint8
    depth: list[np.ndarray]  # (H, W) metres, z in the camera that took it
    poses: list[np.ndarray]  # camera-to-world (OpenCV axes) of the colour camera
    trajectory: Trajectory
    K: np.ndarray


def record(frames: int = 9, seed: int = 0, K: np.ndarray | None = None, depth_K: np.ndarray | None = None,
           depth_from_rgb: np.ndarray | None = None, rot_deg_per_frame: float = 0.9, cm_per_frame: float = 0.9) -> Recording:
    """Render ``frames`` frames ~1/30 s apart (jittered by up to 3 ms) along a smooth trajectory.

    ``depth_K`` and ``depth_from_rgb`` (a depth-camera-to-colour-camera transform) render depth from a separate
    depth camera, as the Kinect of NYU has; by default depth is rendered by the colour camera itself.
    """
    K = TUM_K if K is None else K
    bank, scene, R0, C0 = _world(seed, K)
    rng = np.random.default_rng([seed, 5])
    direction = rng.normal(0, 1, 3) * [1, 1, 0.4]
    omega = np.deg2rad(rot_deg_per_frame) * FPS * direction / np.linalg.norm(direction)
    v = rng.normal(0, 1, 3) * [1, 1, 0.6]
    traj = Trajectory(R0, C0, omega, cm_per_frame / 100 * FPS * v / np.linalg.norm(v))
    exposure = 0.25 / max(float(np.percentile(raycast(scene, bank, R0, C0, K, H, W, stride=4)[0].mean(-1), 60)), 1e-4)
    rec = Recording([], [], [], [], traj, K)
    for i in range(frames):
        t = T0 + i / FPS + rng.uniform(-0.003, 0.003)
        c2w = traj.pose(t)
        radiance, depth = raycast(scene, bank, c2w[:3, :3], c2w[:3, 3], K, H, W)
        if depth_K is not None:
            d2w = c2w @ depth_from_rgb
            depth = raycast(scene, bank, d2w[:3, :3], d2w[:3, 3], depth_K, H, W)[1]
        rec.times.append(t)
        rec.rgb.append(_expose(radiance, exposure))
        rec.depth.append(depth.astype(np.float64))
        rec.poses.append(c2w)
    return rec


TUM_K = intrinsics_matrix(*TUM_CAMERAS["freiburg1"])
ICL_K = intrinsics_matrix(ICL_INTRINSICS[0], abs(ICL_INTRINSICS[1]), *ICL_INTRINSICS[2:])


def _trajectory_lines(traj: Trajectory, times: list[float], to_file=lambda T: T) -> list[str]:
    lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    for t in np.arange(times[0] - 0.05, times[-1] + 0.05, 0.01):  # 100 Hz, like a motion-capture system
        T = to_file(traj.pose(t))
        q = matrix_to_quat(T[None, :3, :3])[0]  # w, x, y, z
        lines.append(" ".join(f"{x:.9f}" for x in [t, *T[:3, 3], q[1], q[2], q[3], q[0]]))
    return lines


def write_tum(root: Path, rec: Recording, flip_y: bool = False) -> Path:
    """A TUM RGB-D sequence folder (``flip_y``: ICL-NUIM's camera convention, y up)."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines = ["# color images", "# timestamp filename"], ["# depth maps", "# timestamp filename"]
    rng = np.random.default_rng(3)
    for t, rgb, depth in zip(rec.times, rec.rgb, rec.depth):
        td = t + rng.uniform(-0.006, 0.006)  # depth has its own, slightly different timestamps
        Image.fromarray(rgb).save(root / "rgb" / f"{t:.6f}.png")
        Image.fromarray(np.round(depth * 5000).astype(np.uint16)).save(root / "depth" / f"{td:.6f}.png")
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    to_file = (lambda T: FLIP_Y @ T @ FLIP_Y) if flip_y else (lambda T: T)
    (root / "groundtruth.txt").write_text("\n".join(_trajectory_lines(rec.trajectory, rec.times, to_file)) + "\n")
    return root


def write_folders(root: Path, rec: Recording, scannet: bool = False, depth_scale: float = 1000.0) -> Path:
    """A frame folder: color/NNNNN.jpg, depth/NNNNN.png (``depth_scale`` units per metre), pose/NNNNN.txt
    (camera-to-world), numbered from 200 as in the Redwood copy, with camera-intrinsics.txt (3 x 3), or
    ScanNet's intrinsic/intrinsic_color.txt (4 x 4) and frames numbered from 0 without padding (``scannet``)."""
    for name in ("color", "depth", "pose"):
        (root / name).mkdir(parents=True)
    for i, (rgb, depth, pose) in enumerate(zip(rec.rgb, rec.depth, rec.poses)):
        stem = str(i) if scannet else f"{200 + i:05d}"
        Image.fromarray(rgb).save(root / "color" / f"{stem}.jpg", quality=98)
        Image.fromarray(np.round(depth * depth_scale).astype(np.uint16)).save(root / "depth" / f"{stem}.png")
        np.savetxt(root / "pose" / f"{stem}.txt", pose)
    if scannet:
        (root / "intrinsic").mkdir()
        K4 = np.eye(4)
        K4[:3, :3] = rec.K
        np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K4)
    else:
        np.savetxt(root / "camera-intrinsics.txt", rec.K)
    return root


def write_sevenscenes(root: Path, rec: Recording, first: int = 935) -> Path:
    """A 7-Scenes-layout folder as SUN3D excerpts (3DMatch's demo fragments) come: frame-NNNNNN.color.png,
    .depth.png (16-bit millimetres) and .pose.txt (camera-to-world), numbered from ``first``, and no
    camera-intrinsics.txt (its intrinsics must be given)."""
    root.mkdir(parents=True)
    for i, (rgb, depth, pose) in enumerate(zip(rec.rgb, rec.depth, rec.poses)):
        stem = f"frame-{first + i:06d}"
        Image.fromarray(rgb).save(root / f"{stem}.color.png")
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(root / f"{stem}.depth.png")
        np.savetxt(root / f"{stem}.pose.txt", pose)
    return root


def write_pgm(path: Path, a: np.ndarray, byte_order: str = "little") -> None:
    body = a.astype("<u2" if byte_order == "little" else ">u2").tobytes()
    path.write_bytes(f"P5\n{a.shape[1]} {a.shape[0]}\n65535\n".encode() + body)


def write_ppm(path: Path, a: np.ndarray) -> None:
    path.write_bytes(f"P6\n{a.shape[1]} {a.shape[0]}\n255\n".encode() + np.ascontiguousarray(a, np.uint8).tobytes())


def nyu_recording(frames: int = 9, seed: int = 0) -> Recording:
    return record(frames, seed, K=intrinsics_matrix(*NYU_RGB), depth_K=intrinsics_matrix(*NYU_DEPTH),
                  depth_from_rgb=np.linalg.inv(NYU_DEPTH_TO_RGB))


def write_nyu(root: Path, rec: Recording) -> Path:
    """A NYU Depth v2 raw scene folder: r-<time>-<id>.ppm colour, d-<time>-<id>.pgm raw disparity (depth camera)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(4)
    a, b = NYU_DISPARITY
    for i, (t, rgb, depth) in enumerate(zip(rec.times, rec.rgb, rec.depth)):
        raw = np.where(depth > 0.4, np.round(b - a / np.maximum(depth, 1e-6)), 2047).astype(np.uint16)
        td = t + rng.uniform(-0.008, 0.008)
        write_ppm(root / f"r-{t:.6f}-{1000 + i}.ppm", rgb)
        write_pgm(root / f"d-{td:.6f}-{2000 + i}.pgm", raw)
    return root
