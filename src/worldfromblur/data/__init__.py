"""Datasets: the shared on-disk format, its validator, the builders and the PyTorch dataset."""

from .dataset import BlurDataset
from .format import DatasetError, SampleRecord, read_manifest, read_sample, write_sample

__all__ = ["BlurDataset", "DatasetError", "SampleRecord", "read_manifest", "read_sample", "write_sample"]
