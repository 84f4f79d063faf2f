"""The stream-fed training step, change by change: samples per second, GFLOP per sample and share of the bf16 peak.

    python -m benchmarks.bench_step [--device cuda] [--rungs all] [--steps 20] [--models nafnet]
                                    [--profile RUNG]

Each rung is the shipped recipe's training step (``wfb train-model compact``: the shipped architecture, the stream
at 160 x 120 from a procedural pool, the supervised stage, AdamW) with one more change than the rung before, timed
through the trainer itself (:class:`worldfromblur.training.trainer.Trainer`, so that everything a real run does per
step counts) after warm-up steps (which also pay for compilation):

- ``today``: NumPy motion drawn sample by sample on the host, one wait for the device per step (``draws=host``);
- ``device-draws``: the whole stream on the device (``draws=device``);
- ``channels-last``: NHWC weights and images;
- ``compile``: ``torch.compile`` of the modules;
- ``batch-128``: 128 samples a step (learning rate scaled from 32);
- ``cuda-graphs``: ``compile=reduce-overhead``.

Rows for the larger modules of the other open issues follow with the last rung's settings (``--models``): the
NAFNet deblurrer (width 32) on 256 x 256 crops, and ``rooms``: the shipped model with every sample a new procedural
room ray-cast on the device (``data.stream.rooms=1``, the rooms drawn ahead by 8 worker processes; on the CPU by the
training process), against the pool frames of the last rung (issue 23 allows it 20 % of the step). (The
EfficientNet-Lite0 depth module had a row until it became the shipped model's depth, release 5.) On CUDA the bf16
autocast is on in every rung (``amp=auto``); the share of the peak uses ``--peak-tflops`` (default: 989 TFLOP/s, dense bf16 of an H100 or
H200 SXM). ``--profile RUNG`` adds that rung's top kernels and the share of the step's wall time in which the device
had no kernel running (host gaps), from ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, table
from worldfromblur.training.recipe import read_recipe
from worldfromblur.training.sources import batches
from worldfromblur.training.trainer import Trainer

RUNGS = {
    "today": ["data.stream.draws=host", "batch_size=32"],
    "device-draws": ["data.stream.draws=device", "batch_size=32"],
    "channels-last": ["data.stream.draws=device", "batch_size=32", "channels_last=true"],
    "compile": ["data.stream.draws=device", "batch_size=32", "channels_last=true", "compile=default"],
    "batch-128": ["data.stream.draws=device", "batch_size=128", "optim.lr_batch=32", "channels_last=true",
                  "compile=default"],
    "cuda-graphs": ["data.stream.draws=device", "batch_size=128", "optim.lr_batch=32", "channels_last=true",
                    "compile=reduce-overhead"],
}
MODELS = {
    "shipped": [],
    "nafnet": ["model.deblur=nafnet", "model.deblur_widths=[32]", "init.deblur=null", "data.stream.size=[256,256]"],
    "rooms": ["data.stream.rooms=1.0", "data.stream.room_workers=8"],
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def trainer_for(overrides: list[str], device: str, out: Path, pool: str) -> Trainer:
    recipe = read_recipe("compact", [f"data.pool=[{pool}]", f"device={device}", "image_every=0", "log_every=100000",
                                     "ckpt_every=100000", "max_steps=100000", *overrides])
    cfg = recipe.stages[0].config
    cfg.out = str(out)
    if device == "cpu":
        cfg.batch_size = min(cfg.batch_size, 8)
        cfg.compile = "off" if cfg.compile == "reduce-overhead" else cfg.compile
        if "room_workers" in cfg.data.stream:  # the CPU's cores train; workers would only compete with them
            cfg.data.stream["room_workers"] = 0
    return Trainer(cfg, resume=False, progress=False)


def flops_per_sample(run: Trainer, batch: dict) -> float:
    """Floating-point work of one training step per sample: the forward pass counted, times 3."""
    model = run.model
    with FlopCounterMode(display=False) as counter, torch.no_grad(), \
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.use_bf16):
        model.stage_loss(run.cfg.stage, batch, run.cfg.loss)
    return 3 * counter.get_total_flops() / run.cfg.batch_size


def measure(run: Trainer, device: str, steps: int, warmup: int, profile: bool) -> tuple[float, str]:
    feed = batches(run.cfg, run.source, 0, 0, 1, run.device)
    run.model.train()
    for _ in range(warmup):
        run.train_step(next(feed))
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        run.train_step(next(feed))
    _sync(device)
    rate = steps * run.cfg.batch_size / (time.perf_counter() - t)
    report = ""
    if profile:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            t = time.perf_counter()
            for _ in range(5):
                run.train_step(next(feed))
            _sync(device)
            wall = time.perf_counter() - t
        key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
        report = prof.key_averages().table(sort_by=key, row_limit=12)
        if device == "cuda":
            busy = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA") / 1e6
            report += f"\ndevice busy {busy:.3f} s of {wall:.3f} s wall over 5 steps: host gaps {100 * (1 - busy / wall):.0f} %\n"
    return rate, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rungs", nargs="+", default=["all"], help=f"rungs to time: all or some of {', '.join(RUNGS)}")
    ap.add_argument("--models", nargs="*", default=[], help=f"larger models to time with the last rung: {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pool", default="synthetic:64")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--profile", nargs="*", default=[], help="rungs to profile (top kernels, host gaps)")
    args = ap.parse_args()
    rungs = list(RUNGS) if args.rungs == ["all"] else args.rungs
    if args.device == "cpu":
        rungs = [r for r in rungs if r != "cuda-graphs"]
    plan = [(r, "shipped", RUNGS[r]) for r in rungs] + [(rungs[-1], m, RUNGS[rungs[-1]] + MODELS[m]) for m in args.models]
    rows, reports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (rung, model, overrides) in enumerate(plan):
            try:
                run = trainer_for(overrides, args.device, Path(tmp) / f"run{i}", args.pool)
                rate, report = measure(run, args.device, args.steps, args.warmup, rung in args.profile and model == "shipped")
                flops = flops_per_sample(run, run.source.batch(0, run.cfg.batch_size))
                run.close()
            except Exception as err:  # noqa: BLE001 - a rung that fails is reported, the others still run
                rows.append([rung, model, "-", "-", f"failed: {type(err).__name__}: {str(err)[:80]}", "-", "-"])
                continue
            share = f"{100 * rate * flops / (args.peak_tflops * 1e12):.2f} %" if args.device == "cuda" else "-"
            size = "x".join(str(x) for x in run.cfg.data.stream.get("size", [160, 120]))
            rows.append([rung, model, size, run.cfg.batch_size, f"{rate:.1f}", f"{flops / 1e9:.2f}", share])
            if report:
                reports.append(f"### {rung}\n\n```\n{report}\n```")
            print(rows[-1], flush=True)
    print(f"\ntraining step ({args.steps} timed steps after {args.warmup}); {machine()}\n")
    print(table(["rung", "model", "size", "batch", "samples/s", "GFLOP/sample (fwd+bwd)", "share of bf16 peak"], rows))
    for r in reports:
        print("\n" + r)


if __name__ == "__main__":
    main()
