"""Evaluation: the paper's metrics as pure functions, and the reports of ``wfb evaluate``."""

from .metrics import depth_metrics, edge_energies, image_metrics, motion_errors

__all__ = ["depth_metrics", "edge_energies", "image_metrics", "motion_errors"]
