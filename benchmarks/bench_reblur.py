"""Time geometry.reblur (all instants in one batched warp) against a naive per-frame, per-sample loop.

    python -m benchmarks.bench_reblur [--batch 4] [--repeat 5]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import machine, table, timeit
from worldfromblur.geometry import pose_from_uv, reblur, warp


def naive(image, depth, poses, K):
    """One warp call per sample and per instant, in Python loops."""
    out = []
    for b in range(image.shape[0]):
        acc = image[b : b + 1].clone()
        for k in range(poses.shape[1]):
            acc += warp(image[b : b + 1], depth[b : b + 1], poses[b, k][None], K, padding_mode="border", validate=False)[0]
        out.append(acc / (poses.shape[1] + 1))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for W, H in ((320, 240), (640, 480)):
            g = torch.Generator().manual_seed(0)
            B = args.batch
            image = torch.rand(B, 3, H, W, generator=g).to(device)
            depth = (1 + 4 * torch.rand(B, 1, H, W, generator=g)).to(device)
            u = (torch.randn(B, 6, 3, generator=g) * 0.01).to(device)
            v = (torch.randn(B, 6, 3, generator=g) * 0.02).to(device)
            poses = pose_from_uv(u, v)
            K = torch.tensor([[0.8 * W, 0, W / 2 - 0.5], [0, 0.8 * W, H / 2 - 0.5], [0, 0, 1]], device=device)
            t_fast = timeit(lambda: reblur(image, depth, poses, K, validate=False), device, args.repeat)
            t_naive = timeit(lambda: naive(image, depth, poses, K), device, args.repeat)
            rows.append([device, f"{W}x{H}", B, f"{t_fast * 1e3:.1f}", f"{t_naive * 1e3:.1f}", f"{t_naive / t_fast:.2f}x"])
    print(f"reblur, batch of {args.batch} images, 2n = 6 poses, 3 fixed-point steps; {machine()}\n")
    print(table(["device", "size", "batch", "reblur ms", "per-frame loop ms", "speed-up"], rows))


if __name__ == "__main__":
    main()
