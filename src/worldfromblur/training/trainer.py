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
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..checkpoint import checkpoint_dirs, latest_checkpoint, save_checkpoint
from ..devices import resolve_device
from ..errors import WfbError
from ..models import WorldFromBlur
from ..models.efficientnet import imagenet_file
from ..models.io import load_module, model_config_of, shipped_model
from ..viz import colorize_depth
from .config import TrainConfig, save_config
from .sources import batches, open_source


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


def check_pretrained(cfg: TrainConfig) -> None:
    """Every module named in ``pretrained`` has a pretrained encoder and its weights can be found; before any work."""
    for name, source in cfg.pretrained.items():
        kind = getattr(cfg.model, name)
        if (name, kind) != ("depth", "effnet_lite0"):
            raise WfbError(f"pretrained.{name}: the {kind} {name} module has no ImageNet encoder; use "
                           f"model.depth=effnet_lite0, or remove pretrained.{name}")
        if source == "imagenet":
            imagenet_file()
        elif not Path(str(source)).is_file():
            raise WfbError(f"pretrained.{name}: {source} is not a file; give imagenet (the optional package) or a "
                           f"weights file")


def load_pretrained(model: WorldFromBlur, pretrained: dict) -> None:
    for name, source in pretrained.items():
        getattr(model, name).encoder.load_imagenet(None if source == "imagenet" else source)


def init_modules(model: WorldFromBlur, init: dict) -> None:
    """Load modules from checkpoints or run folders (their weights under the module's name); ``shipped`` names the
    model shipped with the package."""
    for name, path in init.items():
        try:
            ckpt = load_module(model, name, shipped_model() if path == "shipped" else path, context=f"init.{name}: ")
            if name == "depth" and (ckpt / "config.yaml").is_file():
                was = model_config_of(ckpt).depth_focal
                if was != model.cfg.depth_focal:
                    warnings.warn(f"init.depth: {ckpt} was trained with model.depth_focal={was}, this run uses "
                                  f"{model.cfg.depth_focal}: its depth starts on another scale for cameras whose focal "
                                  "length differs, and training has to move it", stacklevel=2)
        except WfbError as err:
            if path != "shipped" or "do not fit" not in str(err):
                raise
            raise WfbError(f"{err}; the shipped model's {name} module has another architecture than this config's: "
                           f"start it from scratch with init.{name}=null, or keep the shipped architecture") from None


def peak_lr(cfg: TrainConfig, world: int = 1) -> float:
    """The peak learning rate: ``optim.lr``, scaled by sqrt(global batch / optim.lr_batch) when lr_batch is set."""
    if cfg.optim.lr_batch <= 0:
        return cfg.optim.lr
    return cfg.optim.lr * math.sqrt(cfg.batch_size * world / cfg.optim.lr_batch)


def compile_modules(modules: dict, mode: str) -> dict:
    """The callables of ``modules`` compiled with ``torch.compile`` in ``mode`` ("off": as they are). A graph that
    the compiler cannot build runs eagerly instead (dynamo's ``suppress_errors``), with its warning."""
    if mode == "off":
        return modules
    if not hasattr(torch, "compile"):
        warnings.warn("this PyTorch has no torch.compile; training eagerly (compile=off)", stacklevel=2)
        return modules
    torch._dynamo.config.suppress_errors = True
    return {k: torch.compile(m, mode=None if mode == "default" else mode) for k, m in modules.items()}


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


class Budget:
    """Fits a run into ``cfg.minutes`` counted from ``t0``.

    Calibration times the steps after the first two (which pay for one-off set-up) until ``calibrate`` steps or, in
    one process, a tenth of the budget have passed, and sets ``cfg.max_steps`` to the step that the remaining time
    reaches. Tracking then sets it again every ``recheck`` of the budget from the pace since the previous check, so a
    run that slows down (another job on the machine, checkpoints) still ends on time and one that speeds up (kernels
    tuned, caches warm) uses its time. Under torchrun every rank takes rank 0's figures, at steps all ranks reach."""

    def __init__(self, cfg: TrainConfig, start: int, fixed: bool, t0: float, calibrate: int = 10,
                 recheck: float = 0.05, world: int = 1, device: torch.device | None = None):
        self.cfg, self.start, self.calibrate, self.t0 = cfg, start, calibrate, t0
        self.recheck, self.world, self.device = recheck, world, device
        self.active = cfg.minutes > 0 and not fixed  # calibrating: max_steps is not the budget's yet
        self.tracking = False
        self.mark: tuple[int, float] | None = None  # (step, time) of the last measurement
        self.every = 0  # steps between checks while tracking

    def update(self, step: int) -> bool:
        """Call after each step; True when ``cfg.max_steps`` has just been set to a new value."""
        if not (self.active or self.tracking):
            return False
        now = time.perf_counter()
        if self.mark is None:
            if step == self.start + 2:
                self.mark = (step, now)
            return False
        total = self.cfg.minutes * 60
        done = step - self.mark[0]
        if self.active:
            if done < self.calibrate and (self.world > 1 or now - self.mark[1] < 0.1 * total):
                return False
            self.active, self.tracking = False, True
        elif done < self.every:
            return False
        per_step = (now - self.mark[1]) / done
        left = total - (now - self.t0)
        steps, every = step + max(int(left / per_step), 0), max(int(self.recheck * total / per_step), 1)
        if self.world > 1:  # ranks that stopped at different steps would wait for each other for ever
            figures = torch.tensor([steps, every], dtype=torch.int64, device=self.device)
            dist.broadcast(figures, src=0)
            steps, every = (int(v) for v in figures.tolist())
        self.mark, self.every = (step, now), every
        changed = steps != self.cfg.max_steps
        self.cfg.max_steps = steps
        return changed


def _prepare_modules(cfg: TrainConfig, model: WorldFromBlur, world: int, device: torch.device):
    """(trained parameters, the modules the stage loss calls, model), wrapped in DDP under torchrun."""
    names = model.stage_modules(cfg.stage)
    joint = cfg.stage in ("cycle", "supervised")
    trained = model if joint else getattr(model, cfg.stage)
    if not joint:  # the stage's module, whole or the parts of it that model.train names
        parts = [str(t) for t in model.cfg.train if str(t).startswith(cfg.stage + ".")]
        model.requires_grad_(False)
        for part in parts or [cfg.stage]:
            model.get_submodule(part).requires_grad_(True)
    params = [p for p in trained.parameters() if p.requires_grad]
    if not params or not names:
        raise WfbError("model.train leaves nothing to train in this stage")
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


class Trainer:
    """One run in four phases: set-up (``__init__``: device, process group, data source, model, optimiser, and the
    checkpoint on resume), :meth:`train_step` (one optimisation step with its logging), :meth:`checkpoint` (on
    schedule and after the last step) and :meth:`close`."""

    def __init__(self, cfg: TrainConfig, resume: bool, progress: bool):
        t_start = time.perf_counter()
        self.cfg = cfg
        check_pretrained(cfg)
        self.rank, self.world, self.device = _setup_distributed(cfg)
        self.run_dir = Path(cfg.out)
        if not resume and checkpoint_dirs(self.run_dir):
            raise WfbError(f"{self.run_dir}: already holds a run with checkpoints; pass --resume to continue it, or choose another out=")
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed sample sizes: let cuDNN pick its fastest kernels once
        torch.manual_seed(cfg.seed)
        self.source = open_source(cfg, self.device, progress and self.rank == 0)
        model = WorldFromBlur(cfg.model)
        load_pretrained(model, cfg.pretrained)
        init_modules(model, cfg.init)
        model.to(self.device)
        self.params, self.modules, self.model = _prepare_modules(cfg, model, self.world, self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.modules = compile_modules(self.modules, cfg.compile)
        self.optimizer = torch.optim.AdamW(self.params, lr=peak_lr(cfg, self.world), betas=tuple(cfg.optim.betas),
                                           weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.step, fixed_budget = 0, False
        if resume:
            self.step, fixed_budget = _resume(cfg, self.run_dir, self.model, self.optimizer, self.scheduler, self.rank)
        self.done = self.step >= cfg.max_steps and (cfg.minutes <= 0 or fixed_budget)
        self.budget = Budget(cfg, self.step, fixed_budget, t_start, world=self.world, device=self.device)
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

    def train_step(self, batch: dict) -> bool:
        """One optimisation step on ``batch`` with its logging and checkpoints; True after the last step."""
        cfg = self.cfg
        if cfg.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 and v.is_floating_point()
                     else v for k, v in batch.items()}
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
            self.checkpoint(self.run_dir / f"rank{self.rank}", 1)
        if self.rank == 0:
            rate = self.samples / (time.perf_counter() - self.t0)
            _log_step(self.writer, self.bar, cfg, self.step, loss, details, self.scheduler, rate, last)
            if cfg.image_every > 0 and (self.step % cfg.image_every == 0 or self.step == 1):
                _log_images(self.writer, self.step, batch, out)
            if self.step % cfg.ckpt_every == 0 or last:
                self.checkpoint(self.run_dir, cfg.keep_checkpoints)
        self.bar.update()
        return last

    def checkpoint(self, where: Path, keep: int) -> None:
        config = self.run_dir / "config.yaml"  # written by rank 0; another rank may not see it
        save_checkpoint(where, self.step, self.model, config.read_text() if config.is_file() else "", self.state_dict(), keep)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if hasattr(self.source, "close"):  # the stream's room workers
            self.source.close()
        if self.world > 1:
            dist.barrier()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the run folder."""
    run = Trainer(cfg, resume, progress)
    if run.done:
        return run.run_dir
    run.model.train()
    for batch in batches(cfg, run.source, run.step, run.rank, run.world, run.device):
        if run.train_step(batch):
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
