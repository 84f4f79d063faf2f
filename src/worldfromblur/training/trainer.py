"""The trainer: receives a config, owns the stages, logging, checkpoints and resume.

One process per device. Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins a process group (NCCL on GPUs, Gloo on
CPUs), wraps the trained module in DistributedDataParallel and gives each rank its own slice of every step's
samples; checkpoints and logs are written by rank 0 only.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from ..data import BlurDataset, DatasetError
from ..data.pool import FramePool, concat_pools, load_pool, synthetic_pool
from ..data.stream import BlurStream, StreamOptions
from ..data.synthetic.textures import texture_photos
from ..devices import resolve_device
from ..errors import WfbError
from ..models import WorldFromBlur
from ..models.io import load_module
from ..viz import colorize_depth
from ..checkpoint import checkpoint_dirs, latest_checkpoint, save_checkpoint
from .config import TrainConfig, save_config


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


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want_cuda = resolve_device(cfg.device, "device").startswith("cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


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


def init_modules(model: WorldFromBlur, init: dict) -> None:
    """Load modules from stage-1 checkpoints or run folders (their weights under the module's name)."""
    for name, path in init.items():
        load_module(model, name, path, context=f"init.{name}: ")


def _lr_lambda(cfg: TrainConfig):
    warm = max(cfg.optim.warmup_steps, 0)

    def f(step: int) -> float:  # reads cfg.max_steps when called: a time budget sets it after the first steps
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        t = min((step - warm) / max(cfg.max_steps - warm, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _log_images(writer, step: int, batch: dict, out: dict) -> None:
    writer.add_image("input/blurred", batch["blurred"][0].clamp(0, 1), step)
    if "deblurred" in out:
        writer.add_image("output/deblurred", out["deblurred"][0].detach().float().clamp(0, 1), step)
    if "depth" in out:
        d = out["depth"][0, 0].detach().float().cpu().numpy()
        writer.add_image("output/depth", torch.from_numpy(colorize_depth(d)).permute(2, 0, 1), step)
    if "reblurred" in out:
        writer.add_image("output/reblurred", out["reblurred"][0].detach().float().clamp(0, 1), step)
        err = (out["reblurred"][0] - batch["blurred"][0]).abs().mean(0, keepdim=True).detach().float()
        writer.add_image("output/reblur_error_x4", (4 * err).clamp(0, 1), step)


def pool_entries(specs: list) -> list[tuple[str, int, int | None]]:
    """The entries of ``data.pool``, checked: (folder or "synthetic:N", repeat K of "*K", N or None)."""
    if not specs:
        raise WfbError("data.pool is empty; name pool folders (wfb make-pool) or synthetic:N")
    entries = []
    for spec in specs:
        entry, _, times = str(spec).partition("*")
        try:
            repeat = int(times) if times else 1
            assert repeat >= 1
        except (ValueError, AssertionError):
            raise WfbError(f"data.pool: {entry}*{times}: the repeat after * must be a whole number >= 1") from None
        num = None
        if entry.startswith("synthetic:"):
            try:
                num = int(entry.split(":", 1)[1])
            except ValueError:
                raise WfbError(f"data.pool: {entry!r} must be synthetic:N with N a whole number") from None
        entries.append((entry, repeat, num))
    return entries


def build_pool(specs: list, seed: int = 0, held_out: float = 0.0, progress: bool = True,
               textures: str | None = None, held_out_only: bool = False) -> tuple[FramePool | None, FramePool | None]:
    """(training frames, held-out frames) of ``data.pool``.

    Each entry is a pool folder (``wfb make-pool``) or "synthetic:N" (N frames rendered now, 320x240), optionally
    with "*K" appended to repeat its training frames K times (to weigh a small real pool against a large synthetic
    one). Each entry's last ``held_out`` fraction of frames per source is held out before any repetition, so the
    held-out frames never reach training. ``held_out_only`` skips the training frames (None), and renders only the
    held-out frames of synthetic entries, which are a pure function of their index.
    """
    train_parts, held_parts = [], []
    for entry, repeat, num in pool_entries(specs):
        if num is not None:
            if textures is not None and not texture_photos(textures):
                raise WfbError(f"data.textures: {textures} holds no photographs (.png, .jpg, ...)")
            k = int(round(num * held_out))
            if held_out_only and not 0 < k < num:
                continue
            pool = synthetic_pool(num, seed=seed, textures=textures, workers=min(os.cpu_count() or 1, 16),
                                  progress=progress, start=num - k if held_out_only else 0)
            if held_out_only:  # exactly the frames that split() would hold out
                held_parts.append(pool)
                continue
        else:
            pool = load_pool(entry)
        train_part, held_part = pool.split(held_out)
        train_parts += [train_part] * repeat
        if held_part is not None:
            held_parts.append(held_part)
    train = None if held_out_only else concat_pools(train_parts)
    return train, concat_pools(held_parts) if held_parts else None


def stream_options(cfg: TrainConfig) -> StreamOptions:
    known = {f.name for f in fields(StreamOptions)}
    unknown = sorted(set(cfg.data.stream) - known)
    if unknown:
        raise WfbError(f"data.stream: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    opts = StreamOptions(**{**cfg.data.stream, "n": cfg.model.n})
    try:
        opts.check()
    except DatasetError as err:
        raise WfbError(f"data.stream: {err}") from None
    return opts


def open_stream(cfg: TrainConfig, device: torch.device, progress: bool = True) -> BlurStream:
    """The training stream (of the pool's training frames), checked before any training starts."""
    opts = stream_options(cfg)
    try:
        train_pool, _ = build_pool(cfg.data.pool, cfg.seed, cfg.data.held_out, progress, cfg.data.textures)
    except DatasetError as err:
        raise WfbError(f"data.pool: {err}") from None
    if cfg.model.input_size is None:
        cfg.model.input_size = list(opts.size)
    elif list(cfg.model.input_size) != list(opts.size):
        raise WfbError(f"data.stream.size {opts.size} differs from model.input_size {cfg.model.input_size}; make them equal")
    return BlurStream(train_pool, opts, cfg.seed, device)


def _batches(cfg: TrainConfig, source, start: int, rank: int, world: int, device: torch.device):
    """The training batches from step ``start`` on, on ``device``; a pure function of (seed, step, rank)."""
    if isinstance(source, BlurStream):
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


class Budget:
    """Fits a run into ``cfg.minutes`` counted from ``t0``: times the steps after the first two (which pay for one-off
    set-up) until ``calibrate`` steps or a tenth of the budget have passed, then sets ``cfg.max_steps`` to the step
    that the remaining time reaches."""

    def __init__(self, cfg: TrainConfig, start: int, fixed: bool, t0: float, calibrate: int = 10):
        self.cfg, self.start, self.calibrate, self.t0 = cfg, start, calibrate, t0
        self.active = cfg.minutes > 0 and not fixed
        self.t_mark = None

    def update(self, step: int) -> bool:
        """Call after each step; True when ``cfg.max_steps`` has just been set."""
        if not self.active:
            return False
        now = time.perf_counter()
        if step == self.start + 2:
            self.t_mark = now
            return False
        if self.t_mark is None:
            return False
        done = step - self.start - 2
        if done >= self.calibrate or now - self.t_mark >= 0.1 * self.cfg.minutes * 60:
            per_step = (now - self.t_mark) / done
            left = self.cfg.minutes * 60 - (now - self.t0)
            self.cfg.max_steps = step + max(int(left / per_step), 0)
            self.active = False
            return True
        return False


def _prepare_modules(cfg: TrainConfig, model: WorldFromBlur, world: int, device: torch.device):
    """(trained parameters, the modules the stage loss calls, model), wrapped in DDP under torchrun."""
    joint = cfg.stage in ("cycle", "supervised")
    trained = model if joint else getattr(model, cfg.stage)
    if not joint:
        model.requires_grad_(False)
        trained.requires_grad_(True)
    params = [p for p in trained.parameters() if p.requires_grad]
    if not params:
        raise WfbError("model.train leaves nothing to train in this stage")
    if cfg.stage == "cycle":
        names = {"cycle": None}
    elif cfg.stage == "supervised":
        names = {name: name for name in ("deblur", "depth", "motion")
                 if any(p.requires_grad for p in getattr(model, name).parameters())}
    else:
        names = {cfg.stage: cfg.stage}
    modules = {}
    for key, attr in names.items():
        module = model if attr is None else getattr(model, attr)
        if world > 1:
            if device.type == "cuda":  # small per-GPU batches (the paper's 2): normalise over the whole global batch
                module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # (PyTorch's version is GPU-only)
                if attr is None:
                    model = module
                else:
                    setattr(model, attr, module)
            module = torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        modules[key] = module
    if cfg.stage == "supervised":  # frozen modules are not called
        params = [p for name in names for p in getattr(model, name).parameters()]
    return params, modules, model


class _Run:
    """One run's state: set up from the config (and the checkpoint on resume), then advanced step by step."""

    def __init__(self, cfg: TrainConfig, resume: bool, progress: bool):
        t_start = time.perf_counter()
        self.cfg = cfg
        self.rank, self.world, self.device = _setup_distributed(cfg)
        self.run_dir = Path(cfg.out)
        if not resume and checkpoint_dirs(self.run_dir):
            raise WfbError(f"{self.run_dir}: already holds a run with checkpoints; pass --resume to continue it, or choose another out=")
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed sample sizes: let cuDNN pick its fastest kernels once
        torch.manual_seed(cfg.seed)
        self.source = (open_stream(cfg, self.device, progress and self.rank == 0) if cfg.data.source == "stream"
                       else open_dataset(cfg))
        model = WorldFromBlur(cfg.model)
        init_modules(model, cfg.init)
        model.to(self.device)
        self.params, self.modules, self.model = _prepare_modules(cfg, model, self.world, self.device)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.step, fixed_budget = 0, False
        if resume:
            self.step, fixed_budget = _resume(cfg, self.run_dir, self.model, self.optimizer, self.scheduler, self.rank)
        self.done = self.step >= cfg.max_steps and (cfg.minutes <= 0 or fixed_budget)
        self.budget = Budget(cfg, self.step, fixed_budget, t_start)
        self.use_bf16 = self.device.type == "cuda" and cfg.amp in ("auto", "bf16")
        if cfg.amp == "bf16" and self.device.type != "cuda":
            raise WfbError("amp=bf16 needs a CUDA device; use amp=auto or amp=off on CPU")
        self.writer = self.bar = None
        self.pending: list[tuple[int, dict]] = []  # detached loss terms since the last finiteness check
        self.t0, self.samples = time.perf_counter(), 0
        if not self.done:
            self._open_logs(resume, progress)

    def _open_logs(self, resume: bool, progress: bool) -> None:
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if resume else None)
        self.bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc=f"train {self.cfg.stage}", unit="step",
                        file=sys.stderr, disable=not progress or self.rank != 0)

    def state_dict(self) -> dict:
        return {"step": self.step, "max_steps": self.cfg.max_steps,
                "budget_fixed": self.cfg.minutes > 0 and not self.budget.active,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": _rng_state()}

    def advance(self, batch: dict) -> bool:
        """One optimisation step on ``batch`` with its logging and checkpoints; True after the last step."""
        cfg = self.cfg
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else nullcontext():
            loss, details, out = self.model.stage_loss(cfg.stage, batch, cfg.loss, self.modules)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.samples += cfg.batch_size * self.world
        if self.budget.update(self.step) and self.rank == 0:
            save_config(cfg, self.run_dir / "config.yaml")
            self.bar.total = cfg.max_steps
        self.pending.append((self.step, {"loss": loss.detach(), **details}))
        last = self.step >= cfg.max_steps and not self.budget.active
        if self.step % cfg.check_finite_every == 0 or last:
            _check_finite(self.pending, self.run_dir)
        if cfg.save_all_ranks and self.world > 1 and last:
            self._save(self.run_dir / f"rank{self.rank}", 1)
        if self.rank == 0:
            rate = self.samples / (time.perf_counter() - self.t0)
            _log_step(self.writer, self.bar, cfg, self.step, loss, details, self.scheduler, rate, last)
            if cfg.image_every > 0 and (self.step % cfg.image_every == 0 or self.step == 1):
                _log_images(self.writer, self.step, batch, out)
            if self.step % cfg.ckpt_every == 0 or last:
                self._save(self.run_dir, cfg.keep_checkpoints)
        self.bar.update()
        return last

    def _save(self, where: Path, keep: int) -> None:
        config = self.run_dir / "config.yaml"  # written by rank 0; another rank may not see it
        save_checkpoint(where, self.step, self.model, config.read_text() if config.is_file() else "", self.state_dict(), keep)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.world > 1:
            dist.barrier()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the run folder."""
    run = _Run(cfg, resume, progress)
    if run.done:
        return run.run_dir
    run.model.train()
    for batch in _batches(cfg, run.source, run.step, run.rank, run.world, run.device):
        if run.advance(batch):
            break
    run.close()
    return run.run_dir


def _resume(cfg: TrainConfig, run_dir: Path, model, optimizer, scheduler, rank: int) -> tuple[int, bool]:
    """Load the newest checkpoint of ``run_dir``; returns (step, whether a time budget had already set max_steps)."""
    for tmp in (run_dir / "checkpoints").glob(".tmp-*"):  # a save that a crash interrupted
        shutil.rmtree(tmp)
    ckpt, weights, state, _ = latest_checkpoint(run_dir)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    fixed = bool(state.get("budget_fixed", False))
    if fixed:
        cfg.max_steps = int(state["max_steps"])
    if rank == 0:
        print(f"resuming {run_dir} from {ckpt.name}", file=sys.stderr)
    return int(state["step"]), fixed


def _check_finite(pending: list, run_dir: Path) -> None:
    flags = torch.stack([torch.isfinite(v).all() for _, d in pending for v in d.values()])
    if not bool(flags.all()):  # one synchronisation per check, not per step
        bad_step, term = next((s, k) for s, d in pending for k, v in d.items() if not torch.isfinite(v).all())
        raise WfbError(f"non-finite loss at step {bad_step} in term {term}; lower optim.lr or check the data "
                       f"(the last good checkpoint is kept in {run_dir / 'checkpoints'})")
    pending.clear()


def _log_step(writer, bar, cfg: TrainConfig, step: int, loss, details: dict, scheduler, rate: float, last: bool) -> None:
    if step % cfg.log_every != 0 and not last:
        return
    values = {"total": float(loss.detach()), **{k: float(v) for k, v in details.items()}}
    for k, v in values.items():
        writer.add_scalar(f"loss/{k}", v, step)
    writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
    writer.add_scalar("speed/samples_per_s", rate, step)
    bar.set_postfix(loss=f"{values['total']:.4g}", samples_s=f"{rate:.1f}")
