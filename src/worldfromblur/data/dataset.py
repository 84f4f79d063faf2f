"""``BlurDataset``: any dataset the package builds, as a ``torch.utils.data.Dataset`` of tensor dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .format import SPLITS, DatasetError, SampleRecord, read_manifest, read_sample


def record_to_tensors(rec: SampleRecord) -> dict[str, torch.Tensor]:
    """Tensors of one sample (see :class:`BlurDataset` for the keys)."""

    def image(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a).permute(-1, *range(a.ndim - 1)).float().div_(255.0)

    item = {
        "blurred": image(rec.blurred),
        "sharp": image(rec.sharp),
        "depth": torch.from_numpy(rec.depth).float()[None],
        "valid_depth": torch.from_numpy(rec.depth > 0)[None],
        "poses": torch.from_numpy(rec.poses).float(),
        "K": torch.from_numpy(np.asarray(rec.K)).float(),
        "subframes": torch.tensor(int(rec.meta.get("subframes", 1))),
    }
    if rec.frames is not None:
        item["frames"] = torch.from_numpy(rec.frames).permute(0, 3, 1, 2).float().div_(255.0)
    return item


class BlurDataset(Dataset):
    """A split of a built dataset.

    Each item is a dict of tensors:

    - ``blurred`` (3, H, W) and ``sharp`` (3, H, W): sRGB in [0, 1];
    - ``depth`` (1, H, W): reference z-depth in metres (0 where unmeasured) and ``valid_depth`` (1, H, W) bool;
    - ``poses`` (2n, 4, 4): reference-to-instant poses in time order, reference excluded;
    - ``K`` (3, 3): intrinsics in pixels of this image;
    - ``subframes`` (): instants per frame interval of the exposure (1 = the paper's 2n + 1 frame average);
    - ``frames`` (2n + 1, 3, H, W): the sharp frames, when stored and ``load_frames`` is set;
    - ``index`` (): position in this split.

    Every sample is validated when read; a bad file raises :class:`~worldfromblur.data.format.DatasetError`
    naming it.

    Args:
        root: dataset folder (with ``manifest.json``).
        split: "train", "val", "test" or "all".
        load_frames: also load the 2n + 1 sharp frames when the dataset has them.
    """

    def __init__(self, root: str | Path, split: str = "train", load_frames: bool = False):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split == "all":
            self.ids = sorted(i for s in SPLITS for i in self.manifest["splits"].get(s, []))
        elif split in SPLITS:
            self.ids = list(self.manifest["splits"].get(split, []))
        else:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or 'all'")
        self.load_frames = load_frames

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def averaging(self) -> str:
        """How the build averaged its exposures ("linear" or "srgb", :data:`worldfromblur.imaging.Averaging`)."""
        return self.manifest.get("request", {}).get("options", {}).get("averaging", "linear")

    def record(self, index: int) -> SampleRecord:
        """The raw (NumPy) sample."""
        return read_sample(self.root / "samples" / self.ids[index], load_frames=self.load_frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self.ids):
            raise IndexError(index)
        item = record_to_tensors(self.record(index))
        item["index"] = torch.tensor(index)
        return item
