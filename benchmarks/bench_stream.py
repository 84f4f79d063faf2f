"""Throughput of the on-the-fly blur stream, and of a supervised training step fed by it.

    python -m benchmarks.bench_stream [--batch 8 32] [--size 160x120] [--steps 5] [--pool synthetic:64]

For each device present (the CPU, and CUDA where there is one) and batch size, prints the stream's samples per
second (making samples alone) and the supervised stage's (stream + the three compact modules' forward and backward,
bf16 autocast on CUDA), with the training step's floating-point work per sample (counted by PyTorch's FLOP counter
on the forward pass, times 3 for forward and backward) and, on CUDA, the share of the card's dense bf16 peak
(``--peak-tflops``, default 989 for an H100 SXM) that the step achieves.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, table
from worldfromblur.data.stream import BlurStream, StreamOptions
from worldfromblur.models import WorldFromBlur
from worldfromblur.models.config import preset
from worldfromblur.training.config import TrainConfig
from worldfromblur.data.pool import build_pool


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--size", default="160x120")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--pool", nargs="+", default=["synthetic:64"])
    ap.add_argument("--deblur-widths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices to measure, where present")
    ap.add_argument("--rooms", type=float, default=0.0,
                    help="fraction of samples drawn as new procedural rooms ray-cast on the device (data.stream.rooms)")
    args = ap.parse_args()
    W, H = (int(x) for x in args.size.split("x"))
    pool, _ = build_pool(args.pool, progress=False)
    cfg = TrainConfig(stage="supervised")
    cfg.model = preset("compact")
    cfg.model.deblur_widths = args.deblur_widths
    cfg.loss.depth = "log_l1"
    rows = []
    for device in [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]:
        stream = BlurStream(pool, StreamOptions(size=[W, H], rooms=args.rooms), seed=0, device=device)
        model = WorldFromBlur(cfg.model).to(device).train()
        modules = {m: getattr(model, m) for m in ("deblur", "depth", "motion")}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
        for B in args.batch:
            stream.batch(0, B)  # warm-up
            _sync(device)
            t = time.perf_counter()
            batches = [stream.batch(s, B) for s in range(1, args.steps + 1)]
            _sync(device)
            stream_rate = B * args.steps / (time.perf_counter() - t)

            def step(batch):
                with autocast:
                    loss, _, _ = model.stage_loss("supervised", batch, cfg.loss, modules)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step(batches[0])
            with FlopCounterMode(display=False) as counter:
                with torch.no_grad(), autocast:
                    model.stage_loss("supervised", batches[0], cfg.loss, modules)
            flops = 3 * counter.get_total_flops() / B
            _sync(device)
            t = time.perf_counter()
            for s in range(1, args.steps + 1):
                step(stream.batch(s, B))
            _sync(device)
            train_rate = B * args.steps / (time.perf_counter() - t)
            share = f"{100 * train_rate * flops / (args.peak_tflops * 1e12):.2f} %" if device == "cuda" else "-"
            rows.append([device, B, f"{stream_rate:.1f}", f"{train_rate:.1f}", f"{flops / 1e9:.2f}", share])
    print(f"stream at {W}x{H}, pool {' '.join(args.pool)}; {machine()}")
    print(table(["device", "batch", "stream samples/s", "training samples/s", "GFLOP/sample (fwd+bwd)",
                 "share of bf16 peak"], rows))


if __name__ == "__main__":
    main()
