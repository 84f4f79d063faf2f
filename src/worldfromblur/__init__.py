"""world-from-blur: camera motion, a sharp frame, metric depth and a 3D scene from one motion-blurred photograph."""

__version__ = "0.1.0"
