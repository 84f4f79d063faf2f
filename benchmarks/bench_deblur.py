"""Seconds per photo and weights of the deblurring modules at a photo's size: the shipped compact U-Net and
NAFNet-class modules of several sizes, each run once at full size in the tiles wfb reconstruct uses (one scale; the
multi-scale fusion of the shipped model runs it on 1.3 times the pixels), on the CPU and on a GPU when there is one.

    python -m benchmarks.bench_deblur [--size 1280x800] [--threads 2]

Weights are untrained (speed does not depend on them); the NAFNet rows are the candidates of issue 24.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import machine, table, timeit
from worldfromblur.models import ModelConfig
from worldfromblur.models.cycle import build_deblur
from worldfromblur.reconstruct.fullres import DEFAULT_TILE, tiled

CANDIDATES = {
    "compact [32, 64, 128, 256] (shipped)": ModelConfig(deblur="compact", deblur_widths=[32, 64, 128, 256]),
    "nafnet 8, [1, 1, 1, 1, 1]": ModelConfig(deblur="nafnet", deblur_widths=[8], deblur_blocks=[1, 1, 1, 1, 1]),
    "nafnet 16, [1, 1, 1, 2, 1] (default)": ModelConfig(deblur="nafnet"),
    "nafnet 32, [1, 1, 1, 28, 1] (the paper's GoPro size)": ModelConfig(deblur="nafnet", deblur_widths=[32],
                                                                        deblur_blocks=[1, 1, 1, 28, 1]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="candidates to leave out (their first word and width)")
    args = ap.parse_args()
    W, H = (int(v) for v in args.size.split("x"))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name, cfg in CANDIDATES.items():
        if any(name.startswith(s) for s in args.skip):
            continue
        net = build_deblur(cfg).eval()
        weights = sum(p.numel() for p in net.parameters())
        for device in devices:
            net.to(device)
            x = torch.rand(1, 3, H, W, device=device)
            with torch.no_grad():
                t = timeit(lambda: tiled(net, x, DEFAULT_TILE), device, args.repeat)
            rows.append([name, f"{weights / 1e6:.2f} M", device, f"{t:.2f}", f"{t / (W * H / 1e6):.2f}"])
    print(f"{W}x{H}; {machine()}\n")
    print(table(["module", "weights", "device", "s per photo", "s per MP"], rows))


if __name__ == "__main__":
    main()
