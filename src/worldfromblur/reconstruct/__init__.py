"""From one blurred photo to a 3D scene: reading photos, running and refining the model, writing the outputs."""

from .photo import Photo, PhotoError, intrinsics_for, load_photo
from .outputs import write_outputs
from .pipeline import Reconstruction, Reconstructor, working_size
from .refine import refine

__all__ = ["Photo", "PhotoError", "Reconstruction", "Reconstructor", "intrinsics_for", "load_photo", "refine",
           "working_size", "write_outputs"]
