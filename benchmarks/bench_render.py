"""Frames per second of the two renderers of procedural rooms: the NumPy caster (one frame at a time, as the pools
are rendered) and the batched torch caster (a batch of different rooms in one call), on the CPU and on a GPU when
there is one.

    python -m benchmarks.bench_render [--sizes 160x120 320x240] [--batch 8 32]

Times the ray cast of a sharp frame (radiance and depth) from prepared rooms and cameras; drawing the rooms and
placing the cameras is the same NumPy work for both and is not timed.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import machine, table, timeit
from worldfromblur.data.synthetic.engine import SyntheticOptions, place_camera
from worldfromblur.data.synthetic.scene import make_scene, raycast
from worldfromblur.data.synthetic.textures import make_texture_bank
from worldfromblur.data.synthetic.torch_render import SceneBatch, TextureStack, raycast_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["160x120", "320x240"])
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices for the torch caster, where present")
    args = ap.parse_args()
    bank = make_texture_bank(0)
    devices = [d for d in args.devices if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    rows = []
    for size in args.sizes:
        W, H = (int(x) for x in size.split("x"))
        K = SyntheticOptions(width=W, height=H).K()
        rooms, cams = [], []
        for i in range(max(args.batch)):
            scene = make_scene(np.random.default_rng([99, i]), len(bank))
            rooms.append(scene)
            cams.append(place_camera(np.random.default_rng([98, i]), scene, K, H, W))
        n = 8
        t = timeit(lambda: [raycast(rooms[i], bank, *cams[i], K, H, W) for i in range(n)], "cpu", args.repeat)
        rows.append([size, "NumPy", "cpu", 1, f"{n / t:.0f}"])
        for device in devices:
            textures = TextureStack.from_bank(bank, device)
            for B in args.batch:
                sb = SceneBatch.from_scenes(rooms[:B], device)
                R = torch.tensor(np.stack([c[0] for c in cams[:B]]), dtype=torch.float32, device=device)
                C = torch.tensor(np.stack([c[1] for c in cams[:B]]), dtype=torch.float32, device=device)
                Kt = torch.tensor(K, dtype=torch.float32, device=device).expand(B, 3, 3)
                with torch.no_grad():
                    t = timeit(lambda: raycast_batch(sb, textures, R, C, Kt, H, W), device, args.repeat)
                rows.append([size, "torch", device, B, f"{B / t:.0f}"])
    print(f"{machine()}\n")
    print(table(["size", "renderer", "device", "batch", "frames/s"], rows))


if __name__ == "__main__":
    main()
