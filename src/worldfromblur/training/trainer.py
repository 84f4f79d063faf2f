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
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from ..data import BlurDataset, DatasetError
from ..errors import WfbError
from ..losses import cycle_loss, deblur_loss, depth_loss, motion_loss
from ..models import WorldFromBlur
from ..models.io import load_module
from .checkpoint import checkpoint_dirs, latest_checkpoint, save_checkpoint
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
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise WfbError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
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


def stage_loss(stage: str, model: WorldFromBlur, modules: dict, batch: dict, cfg: TrainConfig):
    """Loss of one stage: stage 1 trains a module apart on clean inputs; stage 2 runs the cycle."""
    if stage == "deblur":
        out = {"deblurred": modules["deblur"](batch["blurred"])}
        return (*deblur_loss(out["deblurred"], batch["sharp"]), out)
    if stage == "depth":
        out = {"depth": modules["depth"](batch["sharp"])}  # clean images, as in the paper's stage 1
        return (*depth_loss(out["depth"], batch["depth"], batch["valid_depth"]), out)
    if stage == "motion":
        u, v = modules["motion"](batch["blurred"], batch["sharp"])  # the clean reference frame
        return (*motion_loss(u, v, batch["poses"], cfg.loss.reversal), {"u": u, "v": v})
    out = modules["cycle"](batch["blurred"], batch["K"])
    return (*cycle_loss(out, batch, cfg.loss.alpha, cfg.loss.reversal), out)


def _lr_lambda(cfg: TrainConfig):
    warm, total = max(cfg.optim.warmup_steps, 0), cfg.max_steps

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        t = min((step - warm) / max(total - warm, 1), 1.0)
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
    from ..viz import colorize_depth

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


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the run folder."""
    rank, world, device = _setup_distributed(cfg)
    run_dir = Path(cfg.out)
    if not resume and checkpoint_dirs(run_dir):
        raise WfbError(f"{run_dir}: already holds a run with checkpoints; pass --resume to continue it, or choose another out=")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    ds = open_dataset(cfg)

    model = WorldFromBlur(cfg.model)
    init_modules(model, cfg.init)
    model.to(device)
    trained = model if cfg.stage == "cycle" else getattr(model, cfg.stage)
    if cfg.stage != "cycle":
        model.requires_grad_(False)
        trained.requires_grad_(True)
    params = [p for p in trained.parameters() if p.requires_grad]
    if not params:
        raise WfbError("model.train leaves nothing to train in this stage")
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))

    step = 0
    if resume:
        for tmp in (run_dir / "checkpoints").glob(".tmp-*"):  # a save that a crash interrupted
            shutil.rmtree(tmp)
        ckpt, weights, state, _ = latest_checkpoint(run_dir)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
        if rank == 0:
            print(f"resuming {run_dir} from {ckpt.name}", file=sys.stderr)
    if step >= cfg.max_steps:
        return run_dir

    wrapped = trained
    if world > 1:
        if device.type == "cuda":  # small per-GPU batches (the paper's 2): normalise over the whole global batch
            trained = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trained)  # (PyTorch's version is GPU-only)
            if cfg.stage == "cycle":
                model = trained
            else:
                setattr(model, cfg.stage, trained)
        wrapped = torch.nn.parallel.DistributedDataParallel(trained, device_ids=[device.index] if device.type == "cuda" else None)
    modules = {cfg.stage: wrapped} if cfg.stage != "cycle" else {"cycle": wrapped}

    config_yaml = None
    writer = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        config_yaml = (run_dir / "config.yaml").read_text()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step if resume else None)

    sampler = StepBatches(len(ds), cfg.batch_size, cfg.seed, step, cfg.max_steps, rank, world)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    use_bf16 = device.type == "cuda" and cfg.amp in ("auto", "bf16")
    if cfg.amp == "bf16" and device.type != "cuda":
        raise WfbError("amp=bf16 needs a CUDA device; use amp=auto or amp=off on CPU")
    model.train()

    def state_dict() -> dict:
        return {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()}

    pending: list[tuple[int, dict]] = []  # detached loss terms since the last finiteness check
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.stage}", unit="step", file=sys.stderr,
               disable=not progress or rank != 0)
    t0, samples = time.perf_counter(), 0
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext():
            loss, details, out = stage_loss(cfg.stage, model, modules, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        samples += cfg.batch_size * world
        pending.append((step, {"loss": loss.detach(), **details}))
        if step % cfg.check_finite_every == 0 or step == cfg.max_steps:
            flags = torch.stack([torch.isfinite(v).all() for _, d in pending for v in d.values()])
            if not bool(flags.all()):  # one synchronisation per check, not per step
                bad_step, term = next((s, k) for s, d in pending for k, v in d.items() if not torch.isfinite(v).all())
                raise WfbError(f"non-finite loss at step {bad_step} in term {term}; lower optim.lr or check the data "
                               f"(the last good checkpoint is kept in {run_dir / 'checkpoints'})")
            pending.clear()
        if cfg.save_all_ranks and world > 1 and step == cfg.max_steps:
            save_checkpoint(run_dir / f"rank{rank}", step, model, config_yaml or "", state_dict(), 1)
        if rank == 0:
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                values = {"total": float(loss.detach()), **{k: float(v) for k, v in details.items()}}
                for k, v in values.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                writer.add_scalar("lr", scheduler.get_last_lr()[0], step)
                rate = samples / (time.perf_counter() - t0)
                writer.add_scalar("speed/samples_per_s", rate, step)
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}", samples_s=f"{rate:.1f}")
            if cfg.image_every > 0 and (step % cfg.image_every == 0 or step == 1):
                _log_images(writer, step, batch, out)
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                save_checkpoint(run_dir, step, model, config_yaml, state_dict(), cfg.keep_checkpoints)
        bar.update()
    bar.close()
    if writer is not None:
        writer.close()
    if world > 1:
        dist.barrier()
    return run_dir

