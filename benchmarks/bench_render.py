"""Frames per second of the two renderers of procedural rooms: the NumPy caster (one frame at a time, as the pools
are rendered) and the batched torch caster (a batch of different rooms in one call), on the CPU and on a GPU when
there is one.

    python -m benchmarks.bench_render [--sizes 160x120 320x240] [--batch 8 32]

Times the ray cast of a sharp frame (radiance and depth) from prepared rooms and cameras. A second table times what
the stream's new rooms (``data.stream.rooms``) cost the host before any casting: drawing a room and placing its
camera (NumPy, the same for both renderers), a texture bank, and the rooms of a run of steps drawn through
:class:`~worldfromblur.data.synthetic.torch_render.RoomSampler` with ``--workers`` processes drawing ahead
(``data.stream.room_workers``), while this process does nothing else (as when a GPU does the step's work), with the
CPU time the training process spends on each room (drawing it, or handing it over).

    python -m benchmarks.bench_render --sizes 160x120 --batch 32 --workers 0 2 --room-batch 32 --room-steps 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import machine, table, timeit
from worldfromblur.data.synthetic.engine import SyntheticOptions, place_camera
from worldfromblur.data.synthetic.scene import make_scene, raycast
from worldfromblur.data.synthetic.textures import make_texture_bank
from worldfromblur.data.synthetic.torch_render import RoomSampler, SceneBatch, TextureStack, raycast_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["160x120", "320x240"])
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices for the torch caster, where present")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="room workers for the host-side table")
    ap.add_argument("--room-batch", type=int, default=32, help="new rooms a step in the host-side table")
    ap.add_argument("--room-steps", type=int, default=8, help="steps timed in the host-side table")
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
    print()
    print(table(["host work (160x120 rooms)", "workers", "rooms/s", "ms a room", "ms of this process's CPU a room"],
                host_rows(args)))


def _warm_up(seconds: float) -> None:
    """A worker's first task: unpickling it imports this module, so torch and the package, before any timing."""
    time.sleep(seconds)


def host_rows(args) -> list[list]:
    """What the stream's new rooms cost the host: a texture bank made here, and the rooms of ``room_steps`` steps
    through a RoomSampler with each number of workers (0: drawn here; the workers' start-up not timed)."""
    W, H = 160, 120
    K = SyntheticOptions(width=W, height=H).K()
    t = time.perf_counter()
    make_texture_bank(1, key=(0, 1))
    rows = [["a texture bank of 48, here", 0, "", f"{(time.perf_counter() - t) * 1e3:.0f}", ""]]
    B, steps = args.room_batch, args.room_steps
    for workers in args.workers:
        sampler = RoomSampler(1, "cpu", texture_steps=0, workers=workers)
        keys = [[(s, 0, i) for i in range(B)] for s in range(steps + 3)]
        if workers:  # start every process (and its imports) before timing, as a run does in its first steps
            pool = sampler._pool()
            for future in [pool.submit(_warm_up, 1.0) for _ in range(workers)]:
                future.result()
        t, cpu = time.perf_counter(), time.process_time()
        for s in range(1, steps + 1):
            sampler._draw(keys[s], [K] * B, H, W)
            for later in keys[s + 1 : s + 3]:  # what the stream hands on (ROOMS_AHEAD steps)
                sampler.ahead(later, [K] * B, H, W)
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu
        sampler.close()
        rows.append([f"{steps} steps of {B} rooms, each a room and its camera", workers, f"{B * steps / dt:.0f}",
                     f"{dt / (B * steps) * 1e3:.2f}", f"{cpu / (B * steps) * 1e3:.2f}"])
    return rows


if __name__ == "__main__":
    main()
