"""``scene.html``: a self-contained, offline 3D view of the point cloud and the camera's path during the exposure.

One HTML file with the viewer (``scene.html`` beside this module, plain canvas 2D with a z-buffer, so it needs no
WebGL, no network and no other file) and the data embedded as base64 arrays. The camera path is drawn exaggerated
about the reference centre (a hand-held exposure moves the camera by millimetres to centimetres, invisible at room
scale); the factor is shown and can be changed with + and -.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from .export import camera_to_reference


def scene_html(points: np.ndarray, colors: np.ndarray, poses: np.ndarray, K: np.ndarray, width: int, height: int,
               title: str = "reconstruction") -> str:
    """The page's text: points (N, 3) metres, colours (N, 3) uint8, poses (2n, 4, 4) reference-to-instant."""
    points = np.asarray(points, np.float32).reshape(-1, 3)
    pivot_z = float(np.median(points[:, 2])) if len(points) else 1.0
    cams = camera_to_reference(poses)
    path_len = float(np.linalg.norm(np.diff(cams[:, :3, 3], axis=0), axis=1).sum())
    # Exaggerate the path to about a tenth of the scene's depth, in powers of two.
    exaggeration = int(2 ** np.clip(np.round(np.log2(0.1 * pivot_z / max(path_len, 1e-6))), 0, 10))
    data = {
        "points": base64.b64encode(points.astype("<f4").tobytes()).decode("ascii"),
        "colors": base64.b64encode(np.asarray(colors, np.uint8).reshape(-1, 3).tobytes()).decode("ascii"),
        "pivot_z": pivot_z,
        "cameras": np.round(cams, 7).tolist(),
        "half_w": float(width / 2 / K[0, 0]),
        "half_h": float(height / 2 / K[1, 1]),
        "frustum": 0.08 * pivot_z,
        "focal_scale": float(K[1, 1] / height),
        "pixel_angle": float(1.0 / K[1, 1]),
        "exaggeration": exaggeration,
    }
    template = (resources.files("worldfromblur.reconstruct") / "scene.html").read_text()
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", json.dumps(data))


def write_scene_html(path: Path, *args, **kwargs) -> None:
    Path(path).write_text(scene_html(*args, **kwargs), encoding="utf-8")
