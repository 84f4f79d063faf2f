"""Parameters, FLOPs and forward time of each model preset, next to the machine's measured matmul speed.

    python -m benchmarks.bench_models [--max-flops 1e12]

FLOPs are counted by torch.utils.flop_counter on the meta device (no arithmetic), a multiply-add counting 2.
Forward passes (the whole cycle: deblur, depth, motion and re-blur of a single 3-channel image, eval mode, no
gradients) are timed where their FLOPs are under --max-flops (default 1 TFLOP, about 10 s on 2 CPU cores), so that
the paper preset's 640x480 pass does not hold the table up for minutes.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, table, timeit
from worldfromblur.models import PRESETS, WorldFromBlur, preset


def matmul_gflops(device: str, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timeit(lambda: a @ b, device, repeat=5)
    return 2 * n**3 / t / 1e9


def count_flops(name: str, H: int, W: int) -> int:
    with torch.device("meta"):
        model = WorldFromBlur(preset(name)).eval()
        x = torch.rand(1, 3, H, W)
        K = torch.tensor([[0.81 * W, 0, W / 2], [0, 0.81 * W, H / 2], [0, 0, 1]])[None]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, K)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-flops", type=float, default=1e12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        peak = matmul_gflops(device)
        for name in PRESETS:
            torch.manual_seed(0)
            model = WorldFromBlur(preset(name)).eval().to(device)
            params = sum(p.numel() for p in model.parameters())
            for W, H in ((320, 240), (640, 480)):
                flops = count_flops(name, H, W)
                x = torch.rand(1, 3, H, W, device=device)
                K = torch.tensor([[0.81 * W, 0, W / 2], [0, 0.81 * W, H / 2], [0, 0, 1]], device=device)[None]
                if flops <= args.max_flops or device == "cuda":
                    with torch.no_grad():
                        t = timeit(lambda: model(x, K), device, repeat=args.repeat)
                    rate = flops / t / 1e9
                    cells = [f"{t:.3f}", f"{rate:.1f}", f"{100 * rate / peak:.0f}%"]
                else:
                    cells = ["not run", "", ""]
                rows.append([device, name, f"{W}x{H}", f"{params / 1e6:.2f}", f"{flops / 1e9:.1f}", *cells, f"{peak:.0f}"])
    print(f"model presets, batch 1, forward of the whole cycle; {machine()}\n")
    print(table(["device", "preset", "size", "params (M)", "GFLOP", "forward s", "GFLOP/s", "of matmul", "matmul GFLOP/s"],
                rows))


if __name__ == "__main__":
    main()
