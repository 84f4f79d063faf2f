"""Where a training run's samples come from (``data.source``): a built dataset (in a seeded, resumable order), the
blur stream made on the training device from frame pools, or blurred crops of real photographs made there too
(with a share of each batch from the blur stream). Each is opened and checked before any training step, and each
gives the same batches for the same (seed, step, rank), so a resumed run sees what the interrupted one would have
seen."""

from __future__ import annotations

from dataclasses import fields

import torch
from torch.utils.data import DataLoader, Sampler

from ..data import BlurDataset, DatasetError
from ..data.photos import PhotoOptions, PhotoStream, load_photos, margin, split_photos
from ..data.pool import build_pool
from ..data.stream import BlurStream, StreamOptions
from ..errors import WfbError
from .config import TrainConfig


class StepBatches(Sampler):
    """Batches of indices for steps ``start .. total - 1``, a pure function of (seed, step, rank).

    The sample stream is a concatenation of seeded permutations of the dataset; step s of rank r takes the
    ``batch`` indices starting at ``(s * world + r) * batch``. A resumed run therefore sees exactly the batches
    the interrupted one would have seen.
    """

    def __init__(self, n: int, batch: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed, self.start, self.total = n, batch, seed, start, total
        self.rank, self.world = rank, world
        self._perms: dict[int, list[int]] = {}

    def _index(self, position: int) -> int:
        epoch, k = divmod(position, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch][k]

    def __iter__(self):
        for step in range(self.start, self.total):
            first = (step * self.world + self.rank) * self.batch
            yield [self._index(first + i) for i in range(self.batch)]

    def __len__(self) -> int:
        return max(self.total - self.start, 0)


def open_dataset(cfg: TrainConfig) -> BlurDataset:
    """The training split, checked before any training starts."""
    try:
        ds = BlurDataset(cfg.data.root, split=cfg.data.split)
    except DatasetError as err:
        raise WfbError(f"data.root: {err}") from None
    if len(ds) == 0:
        raise WfbError(f"data.root: {cfg.data.root} has no samples in split {cfg.data.split!r}; build more or choose another data.split")
    first = ds.record(0)  # validates the files of one sample now rather than mid-run
    n_data = int(ds.manifest.get("request", {}).get("options", {}).get("n", cfg.model.n))
    if n_data != cfg.model.n:
        raise WfbError(f"data.root: the dataset has 2n = {2 * n_data} poses but model.n = {cfg.model.n}; set model.n={n_data}")
    size = list(first.sharp.shape[1::-1])
    if cfg.model.input_size is None:
        cfg.model.input_size = size  # saved with every checkpoint: the resolution wfb reconstruct feeds the model
    elif list(cfg.model.input_size) != size:
        raise WfbError(f"data.root: the dataset's images are {size[0]}x{size[1]} but model.input_size = "
                       f"{cfg.model.input_size}; remove the override or build the data at that size")
    return ds


def checked_options(cls, values: dict, where: str):
    """``cls`` (stream or photo options) from a config's mapping, unknown keys and bad values refused in one line
    naming ``where``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise WfbError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    opts = cls(**values)
    try:
        opts.check()
    except DatasetError as err:
        raise WfbError(f"{where}: {err}") from None
    return opts


def stream_options(cfg: TrainConfig, size: list | None = None, **defaults) -> StreamOptions:
    """The stream's options: ``defaults``, then ``data.stream``, then the model's n, ``size`` when given, and
    ``data.focal_range`` for the stream's new rooms (one lens range for every procedural frame, pool or room)."""
    if "focal_range" in cfg.data.stream:
        raise WfbError("data.stream.focal_range: set data.focal_range, which serves the pool's procedural frames "
                       "and the stream's new rooms alike")
    values = {**defaults, **cfg.data.stream, "n": cfg.model.n, "focal_range": cfg.data.focal_range}
    if size is not None:
        values["size"] = size
    return checked_options(StreamOptions, values, "data.stream")


def open_stream(cfg: TrainConfig, device: torch.device, progress: bool = True) -> BlurStream:
    """The training stream (of the pool's training frames), checked before any training starts."""
    opts = stream_options(cfg)
    try:
        train_pool, _ = build_pool(cfg.data.pool, cfg.seed, cfg.data.held_out, progress, **cfg.data.synthetic())
    except DatasetError as err:
        raise WfbError(f"data.pool: {err}") from None
    if cfg.model.input_size is None:
        cfg.model.input_size = list(opts.size)
    elif list(cfg.model.input_size) != list(opts.size):
        raise WfbError(f"data.stream.size {opts.size} differs from model.input_size {cfg.model.input_size}; make them equal")
    return BlurStream(train_pool, opts, cfg.seed, device)


def photo_options(cfg: TrainConfig) -> PhotoOptions:
    return checked_options(PhotoOptions, {**cfg.data.photo, "n": cfg.model.n}, "data.photo")


class PhotoBatches:
    """The photo source: each step's batch is blurred photo crops plus a ``pool_share`` of blur-stream samples of
    the same size, made on the device; the keys the deblur stage reads (blurred, sharp, valid_blur, K, blur_px)."""

    KEYS = ("blurred", "sharp", "valid_blur", "K", "blur_px")

    def __init__(self, photos: PhotoStream, stream: BlurStream | None, pool_share: float):
        self.photos, self.stream, self.pool_share = photos, stream, pool_share

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def batch(self, step: int, batch_size: int, rank: int = 0) -> dict[str, torch.Tensor]:
        k = round(batch_size * self.pool_share) if self.stream is not None else 0
        parts = [self.photos.batch(step, batch_size - k, rank)] if k < batch_size else []
        if k:
            parts.append(self.stream.batch(step, k, rank))
        return {key: torch.cat([p[key] for p in parts]) for key in self.KEYS}


def open_photos(cfg: TrainConfig, device: torch.device, progress: bool = True, held_out: bool = False,
                seed: int | None = None) -> PhotoBatches:
    """The photo source of the training photos (or the held-out ones), checked before any training starts: every
    photo readable and large enough for a crop with its margin."""
    opts = photo_options(cfg)
    seed = cfg.seed if seed is None else seed
    try:
        train, held = split_photos(cfg.data.photos, cfg.data.held_out)
        paths = held if held_out else train
        if not paths:
            raise DatasetError(f"data.held_out={cfg.data.held_out} holds no photo out; raise it" if held_out else
                               "data.held_out leaves no photo to train on; lower it")
        photos = PhotoStream(load_photos(paths, opts.crop, margin(opts), progress, opts.max_pixels), opts, seed,
                             device)
    except DatasetError as err:
        raise WfbError(f"data.photos: {err}") from None
    stream = None
    if cfg.data.pool_share > 0:
        opts_s = stream_options(cfg, [opts.crop, opts.crop], max_blur_px=opts.max_blur_px)
        try:
            pool, held_pool = build_pool(cfg.data.pool, cfg.seed, cfg.data.held_out, progress, held_out_only=held_out,
                                         **cfg.data.synthetic())
            frames = held_pool if held_out else pool
            if frames is not None:  # an evaluation of a pool that holds nothing out scores the photos alone
                stream = BlurStream(frames, opts_s, seed, device)
        except DatasetError as err:
            raise WfbError(f"data.pool: {err}") from None
    return PhotoBatches(photos, stream, cfg.data.pool_share)


def open_source(cfg: TrainConfig, device: torch.device, progress: bool = True):
    """The run's training source by ``data.source``."""
    if cfg.data.source == "stream":
        return open_stream(cfg, device, progress)
    if cfg.data.source == "photos":
        return open_photos(cfg, device, progress)
    return open_dataset(cfg)


def batches(cfg: TrainConfig, source, start: int, rank: int, world: int, device: torch.device):
    """The training batches from step ``start`` on, on ``device``; a pure function of (seed, step, rank)."""
    if isinstance(source, (BlurStream, PhotoBatches)):
        step = start
        while True:
            yield source.batch(step, cfg.batch_size, rank)
            step += 1
    total = 10**12 if cfg.minutes > 0 else cfg.max_steps  # a budget decides the end as it goes
    sampler = StepBatches(len(source), cfg.batch_size, cfg.seed, start, total, rank, world)
    loader = DataLoader(source, batch_sampler=sampler, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
