"""The procedural rooms of :mod:`worldfromblur.data.synthetic.scene`, ray-cast in torch: batched, on any device.

The same scene description (:class:`~worldfromblur.data.synthetic.scene.Scene`, drawn by ``make_scene``) serves both
renderers: :meth:`SceneBatch.from_scenes` packs a list of scenes into padded tensors, and :func:`raycast_batch`
renders them with the NumPy caster's rules (the room seen from inside, boxes turned about the vertical, vertical
cylinders with a top cap, spheres; per-surface texture, texel size, tint and offset; a mip level chosen from each
pixel's footprint; Lambertian point lights with the same fall-off, plus ambient light). It returns linear radiance
and exact z-depth; ``tests/data/test_synthetic.py`` checks that both renderers agree on the same scene and camera.
This is the renderer a training device can run for a new room every sample, where the NumPy one renders a pool.
"""

from __future__ import annotations

import multiprocessing
import sys
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch

from ...imaging import linear_to_srgb
from ..workers import abandon, result
from .engine import KEYS, check_seed, room_and_camera
from .scene import _EPS, Box, Cylinder, Scene, Sphere
from .textures import BANK_SIZE, Texture, TextureBanks, make_texture_bank, texture_photos

BOX, CYLINDER, SPHERE = 1, 2, 3


@dataclass
class TextureStack:
    """A texture bank's mip pyramids as tensors: ``levels[l]`` is (T, S_l, S_l, 3) linear albedo."""

    levels: list[torch.Tensor]

    @classmethod
    def from_bank(cls, bank: list[Texture], device: torch.device | str = "cpu") -> "TextureStack":
        depth = min(len(t.levels) for t in bank)
        if any(t.levels[0].shape != bank[0].levels[0].shape for t in bank):
            raise ValueError("every texture of a bank must have the same size")
        return cls([torch.from_numpy(np.stack([t.levels[lv] for t in bank])).float().to(device) for lv in range(depth)])


@dataclass
class SceneBatch:
    """B scenes as padded tensors (M objects and L lights at most; padding has kind 0 and light power 0).

    Surfaces are numbered per scene: 0-5 the room's faces (-x, +x, ceiling, floor, -z, +z), 6 + i object i's.
    """

    room: torch.Tensor  # (B, 3): half_x, half_z, height
    kind: torch.Tensor  # (B, M) int: 0 none, BOX, CYLINDER, SPHERE
    center: torch.Tensor  # (B, M, 3)
    half: torch.Tensor  # (B, M, 3) box half extents
    yaw: torch.Tensor  # (B, M) box yaw
    radius: torch.Tensor  # (B, M) cylinder and sphere radius
    y0: torch.Tensor  # (B, M) cylinder top
    y1: torch.Tensor  # (B, M) cylinder bottom
    texture: torch.Tensor  # (B, 6 + M) int
    texel: torch.Tensor  # (B, 6 + M)
    tint: torch.Tensor  # (B, 6 + M, 3)
    offset: torch.Tensor  # (B, 6 + M, 2)
    lights: torch.Tensor  # (B, L, 3)
    power: torch.Tensor  # (B, L)
    ambient: torch.Tensor  # (B,)

    @classmethod
    def from_scenes(cls, scenes: list[Scene], device: torch.device | str = "cpu") -> "SceneBatch":
        return cls.from_arrays(pack_scenes(scenes), device)

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], device: torch.device | str = "cpu") -> "SceneBatch":
        """From :func:`pack_scenes`'s arrays (or :func:`concat_packed`'s)."""
        return cls(**{k: torch.from_numpy(v).to(device=device, dtype=torch.long if v.dtype == np.int64 else torch.float32)
                      for k, v in a.items()})


_PER_OBJECT = ("kind", "center", "half", "yaw", "radius", "y0", "y1")  # (B, M, ...)
_PER_SURFACE = ("texture", "texel", "tint", "offset")  # (B, 6 + M, ...)
_PER_LIGHT = ("lights", "power")  # (B, L, ...)


def pack_scenes(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """B scenes as padded NumPy arrays, the fields of :class:`SceneBatch` (M objects and L lights at most; padding has
    kind 0, texel 1 and light power 0): small to send from a worker process, one array per field."""
    B = len(scenes)
    M = max(max((len(s.objects) for s in scenes), default=0), 1)
    L = max(len(s.lights) for s in scenes)
    a = {k: np.zeros(shape, dtype) for k, shape, dtype in (
        ("room", (B, 3), np.float64), ("kind", (B, M), np.int64), ("center", (B, M, 3), np.float64),
        ("half", (B, M, 3), np.float64), ("yaw", (B, M), np.float64), ("radius", (B, M), np.float64),
        ("y0", (B, M), np.float64), ("y1", (B, M), np.float64), ("texture", (B, 6 + M), np.int64),
        ("texel", (B, 6 + M), np.float64), ("tint", (B, 6 + M, 3), np.float64), ("offset", (B, 6 + M, 2), np.float64),
        ("lights", (B, L, 3), np.float64), ("power", (B, L), np.float64), ("ambient", (B,), np.float64))}
    a["texel"][:] = 1.0
    for b, s in enumerate(scenes):
        a["room"][b] = s.room.half_x, s.room.half_z, s.room.height
        surfaces = list(s.room.surfaces)
        for i, ob in enumerate(s.objects):
            a["center"][b, i] = ob.center
            if isinstance(ob, Box):
                a["kind"][b, i], a["half"][b, i], a["yaw"][b, i] = BOX, ob.half, ob.yaw
            elif isinstance(ob, Cylinder):
                a["kind"][b, i], a["radius"][b, i], a["y0"][b, i], a["y1"][b, i] = CYLINDER, ob.radius, ob.y0, ob.y1
            elif isinstance(ob, Sphere):
                a["kind"][b, i], a["radius"][b, i] = SPHERE, ob.radius
            surfaces.append(ob.surface)
        for j, sf in enumerate(surfaces):
            a["texture"][b, j], a["texel"][b, j], a["tint"][b, j], a["offset"][b, j] = sf.texture, sf.texel, sf.tint, sf.offset
        a["lights"][b, : len(s.lights)], a["power"][b, : len(s.lights)] = s.lights, s.light_power
        a["ambient"][b] = s.ambient
    return a


def concat_packed(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """:func:`pack_scenes` arrays of several batches as one, padded to the most objects and lights of any."""
    M = max(p["kind"].shape[1] for p in parts)
    L = max(p["power"].shape[1] for p in parts)

    def padded(p: dict[str, np.ndarray], k: str) -> np.ndarray:
        v = p[k]
        extra = M - p["kind"].shape[1] if k in _PER_OBJECT + _PER_SURFACE else L - v.shape[1] if k in _PER_LIGHT else 0
        if not extra:
            return v
        return np.pad(v, [(0, 0), (0, extra)] + [(0, 0)] * (v.ndim - 2), constant_values=1.0 if k == "texel" else 0)

    return {k: np.concatenate([padded(p, k) for p in parts]) for k in parts[0]}


def _intersections(sb: SceneBatch, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(B, M, N) distance along each ray to each object (inf where none). o (B, 3), d (B, N, 3)."""
    inf = torch.tensor(float("inf"), device=d.device)
    dx, dy, dz = d[:, None, :, 0], d[:, None, :, 1], d[:, None, :, 2]  # (B, 1, N)
    rel = (o[:, None, :] - sb.center)[..., None]  # (B, M, 3, 1)
    rx, ry, rz = rel[:, :, 0], rel[:, :, 1], rel[:, :, 2]  # (B, M, 1)
    # boxes: slabs in the box frame (local = R^T (p - centre), R a rotation about y)
    c, s = torch.cos(sb.yaw)[..., None], torch.sin(sb.yaw)[..., None]
    lo = (c * rx - s * rz, ry, s * rx + c * rz)
    ld = (c * dx - s * dz, dy.expand_as(c * dx), s * dx + c * dz)
    t_in = torch.full(ld[0].shape, -float("inf"), device=d.device)
    t_out = torch.full(ld[0].shape, float("inf"), device=d.device)
    for axis in range(3):
        h = sb.half[:, :, axis, None]
        inv = 1.0 / ld[axis]
        t1, t2 = (-h - lo[axis]) * inv, (h - lo[axis]) * inv
        t_in = torch.fmax(t_in, torch.fmin(t1, t2))  # fmax/fmin ignore the NaN of 0 * inf
        t_out = torch.fmin(t_out, torch.fmax(t1, t2))
    t_box = torch.where((t_in <= t_out) & (t_in > _EPS), t_in, inf)
    # spheres
    r = sb.radius[..., None]
    b = dx * rx + dy * ry + dz * rz
    a = dx * dx + dy * dy + dz * dz
    disc = b * b - a * (rx * rx + ry * ry + rz * rz - r * r)
    t = (-b - torch.sqrt(disc.clamp_min(0))) / a
    t_sphere = torch.where((disc >= 0) & (t > _EPS), t, inf)
    # vertical cylinders: the side, then the top cap (the bottom stands on the floor)
    a2 = dx * dx + dz * dz
    b2 = rx * dx + rz * dz
    disc2 = b2 * b2 - a2 * (rx * rx + rz * rz - r * r)
    t_side = (-b2 - torch.sqrt(disc2.clamp_min(0))) / a2
    y = o[:, None, 1, None] + t_side * dy
    y0, y1 = sb.y0[..., None], sb.y1[..., None]
    t_side = torch.where((disc2 >= 0) & (a2 > 0) & (t_side > _EPS) & (y >= y0) & (y <= y1), t_side, inf)
    t_cap = (y0 - o[:, None, 1, None]) / dy
    px, pz = rx + t_cap * dx, rz + t_cap * dz
    t_cap = torch.where((t_cap > _EPS) & (px * px + pz * pz <= r * r), t_cap, inf)
    t_cyl = torch.nan_to_num(torch.minimum(t_side, t_cap), nan=float("inf"))
    kind = sb.kind[..., None]
    return torch.where(kind == BOX, t_box, torch.where(kind == SPHERE, t_sphere, torch.where(kind == CYLINDER, t_cyl, inf)))


def _room_hits(sb: SceneBatch, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exit distance from inside the room (B, N) and the face hit (B, N)."""
    bounds = ((-sb.room[:, 0], sb.room[:, 0]), (-sb.room[:, 2], torch.zeros_like(sb.room[:, 2])),
              (-sb.room[:, 1], sb.room[:, 1]))
    t_best = torch.full(d.shape[:2], float("inf"), device=d.device)
    face = torch.zeros(d.shape[:2], dtype=torch.long, device=d.device)
    for axis, (lo, hi) in enumerate(bounds):
        da = d[..., axis]
        oa = o[:, axis, None]
        t = torch.where(da > 0, (hi[:, None] - oa) / da, torch.where(da < 0, (lo[:, None] - oa) / da, float("inf")))
        closer = t < t_best
        t_best = torch.where(closer, t, t_best)
        face = torch.where(closer, axis * 2 + (da > 0).long(), face)
    return t_best, face


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, K, ...) at index (B, N) -> (B, N, ...)."""
    shape = index.shape + x.shape[2:]
    flat = index.reshape(index.shape[0], -1, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, flat).reshape(shape)


def _sample(textures: TextureStack, tex: torch.Tensor, s: torch.Tensor, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Bilinear, wrapping lookup of level-0 texel coordinates (s, t) in texture ``tex`` at mip ``level``; all (P,)."""
    out = torch.zeros(s.shape[0], 3, device=s.device)
    for lv, img in enumerate(textures.levels):
        sel = level == lv
        if not bool(sel.any()):
            continue
        size = img.shape[1]
        flat = img.reshape(-1, 3)
        x = s[sel] * (0.5**lv) - 0.5
        y = t[sel] * (0.5**lv) - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        wx, wy = (x - x0)[:, None], (y - y0)[:, None]
        x0, y0 = x0.long() % size, y0.long() % size
        x1, y1 = (x0 + 1) % size, (y0 + 1) % size
        base = tex[sel] * size * size
        c00, c01 = flat[base + y0 * size + x0], flat[base + y0 * size + x1]
        c10, c11 = flat[base + y1 * size + x0], flat[base + y1 * size + x1]
        top = c00 + (c01 - c00) * wx
        bottom = c10 + (c11 - c10) * wx
        out[sel] = top + (bottom - top) * wy
    return out


def raycast_batch(sb: SceneBatch, textures: TextureStack, R_wc: torch.Tensor, C: torch.Tensor, K: torch.Tensor,
                  H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear radiance (B, H, W, 3) and exact z-depth (B, H, W) of each scene through the centres of an H x W
    image's pixels, from cameras R_wc (B, 3, 3) (camera-to-world), C (B, 3) with intrinsics K (B, 3, 3), as
    :func:`worldfromblur.data.synthetic.scene.raycast` renders one."""
    dev = R_wc.device
    B = R_wc.shape[0]
    ys, xs = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32),
                            torch.arange(W, device=dev, dtype=torch.float32), indexing="ij")
    fx, fy, cx, cy = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    cam = torch.stack([(xs.reshape(1, -1) - cx) / fx, (ys.reshape(1, -1) - cy) / fy,
                       torch.ones(B, H * W, device=dev)], -1)  # (B, N, 3), z = 1
    d = cam @ R_wc.transpose(1, 2)  # world-frame rays
    o = C.float()
    t_room, face = _room_hits(sb, o, d)
    t_obj = _intersections(sb, o, d)  # (B, M, N)
    t_all = torch.cat([t_room[:, None], t_obj], 1)
    t_best, which = t_all.min(1)  # the room wins ties, then the earlier object (the NumPy caster's order)
    owner = which - 1  # -1: the room
    p = o[:, None] + t_best[..., None] * d  # (B, N, 3)
    surf = torch.where(owner < 0, face, 6 + owner)
    obj = owner.clamp_min(0)
    kind = torch.where(owner < 0, torch.zeros_like(owner), _gather(sb.kind, obj))
    center, half = _gather(sb.center, obj), _gather(sb.half, obj)
    yaw, radius, y0 = _gather(sb.yaw, obj), _gather(sb.radius, obj), _gather(sb.y0, obj)
    # room faces: axis face // 2, texture in the other two coordinates
    axis = face // 2
    room_n = torch.nn.functional.one_hot(axis, 3).float()
    room_st = torch.stack([torch.where(axis == 0, p[..., 2], p[..., 0]), torch.where(axis == 1, p[..., 2], p[..., 1])], -1)
    # boxes
    c, s = torch.cos(yaw), torch.sin(yaw)
    rel = p - center
    local = torch.stack([c * rel[..., 0] - s * rel[..., 2], rel[..., 1], s * rel[..., 0] + c * rel[..., 2]], -1)
    baxis = (local / torch.where(half > 0, half, torch.ones_like(half))).abs().argmax(-1)
    n_local = torch.nn.functional.one_hot(baxis, 3).float() * torch.sign(local)
    box_n = torch.stack([c * n_local[..., 0] + s * n_local[..., 2], n_local[..., 1],
                         -s * n_local[..., 0] + c * n_local[..., 2]], -1)
    box_st = torch.where((baxis == 0)[..., None], local[..., [2, 1]],
                         torch.where((baxis == 1)[..., None], local[..., [0, 2]], local[..., [0, 1]])) + baxis[..., None] * 1.7
    # spheres
    r_safe = torch.where(radius > 0, radius, torch.ones_like(radius))[..., None]
    sph_n = rel / r_safe
    sph_st = torch.stack([torch.atan2(sph_n[..., 0], sph_n[..., 2]), torch.asin(sph_n[..., 1].clamp(-1, 1))], -1) * r_safe
    # cylinders
    on_cap = (p[..., 1] - y0).abs() < 1e-4
    cyl_n = torch.where(on_cap[..., None], torch.tensor([0.0, -1.0, 0.0], device=dev),
                        torch.stack([rel[..., 0], torch.zeros_like(rel[..., 0]), rel[..., 2]], -1) / r_safe)
    cyl_st = torch.where(on_cap[..., None], rel[..., [0, 2]],
                         torch.stack([torch.atan2(rel[..., 0], rel[..., 2]) * r_safe[..., 0], p[..., 1]], -1))
    k = kind[..., None]
    normal = torch.where(k == BOX, box_n, torch.where(k == SPHERE, sph_n, torch.where(k == CYLINDER, cyl_n, room_n)))
    st = torch.where(k == BOX, box_st, torch.where(k == SPHERE, sph_st, torch.where(k == CYLINDER, cyl_st, room_st)))
    # shading, as the NumPy caster does it
    ray_len = d.norm(dim=-1)
    facing = (normal * d).sum(-1)
    normal = normal * torch.where(facing > 0, -1.0, 1.0)[..., None]
    cos_in = facing.abs() / ray_len
    footprint = t_best * ray_len / K[:, 0, 0, None] / cos_in.clamp_min(0.25)
    texel, offset, tint = _gather(sb.texel, surf), _gather(sb.offset, surf), _gather(sb.tint, surf)
    n_levels = len(textures.levels)
    level = torch.round(torch.log2((footprint / texel).clamp_min(1e-6))).clamp(0, n_levels - 1).long()
    coords = (st + offset) / texel[..., None]
    albedo = _sample(textures, _gather(sb.texture, surf).reshape(-1), coords[..., 0].reshape(-1),
                     coords[..., 1].reshape(-1), level.reshape(-1)).reshape(B, -1, 3) * tint
    light = sb.ambient[:, None].expand(B, H * W).clone()
    for li in range(sb.lights.shape[1]):
        lv = sb.lights[:, li, None] - p
        dist2 = (lv * lv).sum(-1)
        light = light + sb.power[:, li, None] * (normal * lv).sum(-1).clamp_min(0) / (dist2.sqrt() * (1 + dist2 / 4))
    return (albedo * light[..., None]).reshape(B, H, W, 3), t_best.reshape(B, H, W)


def expose_batch(radiance: torch.Tensor, psf_sigma: float = 0.5) -> torch.Tensor:
    """Linear radiance (B, H, W, 3) -> 8-bit-quantised sRGB (B, 3, H, W) in [0, 1], as ``render_still`` exposes a
    frame: the gain that maps each image's 60th percentile to 0.25, the Gaussian point spread (edge-padded), the
    sRGB curve."""
    B, H, W, _ = radiance.shape
    gain = 0.25 / torch.quantile(radiance.mean(-1).reshape(B, -1), 0.6, dim=1).clamp_min(1e-4)
    x = (radiance * gain[:, None, None, None]).permute(0, 3, 1, 2)
    if psf_sigma > 0:
        r = int(np.ceil(3 * psf_sigma))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) / psf_sigma) ** 2)
        k = k / k.sum()
        x = torch.nn.functional.pad(x, (r, r, r, r), mode="replicate")
        x = torch.nn.functional.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k.view(1, 1, -1, 1)).reshape(B, 3, -1, W + 2 * r)
        x = torch.nn.functional.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k.view(1, 1, 1, -1)).reshape(B, 3, H, W)
    return torch.round(linear_to_srgb(x.clamp(0, 1)) * 255) / 255


def _draw_rooms(seed: int, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int):
    """``room_and_camera`` of the stream for each key (step, ...), as :func:`pack_scenes` arrays, R_wc (n, 3, 3) and
    C (n, 3)."""
    drawn = [room_and_camera("stream", seed, k[0], BANK_SIZE, K, H, W, *k[1:]) for k, K in zip(keys, Ks)]
    return pack_scenes([d[0] for d in drawn]), np.stack([d[1] for d in drawn]), np.stack([d[2] for d in drawn])


def _room_id(key: tuple[int, ...], K: np.ndarray, H: int, W: int) -> tuple:
    """What a room drawn ahead is known by: its key, its camera's K and the image size."""
    return tuple(key), np.asarray(K, np.float64).tobytes(), H, W


class RoomSampler:
    """New procedural rooms for the blur stream: each key draws a room and a camera in it (NumPy, the engine's
    rules, :func:`~worldfromblur.data.synthetic.engine.room_and_camera` with generator keys of their own use), and
    the frames of a batch are ray-cast together on ``device``.

    Drawing is host work, about 2 ms a room and 0.6 s a texture bank on one core of the 2-core CPU
    (``benchmarks/bench_render.py``): at a GPU's pace it would hold every step up, so ``workers`` processes can draw
    ahead: :meth:`ahead` hands them the rooms of steps to come, and the texture banks of the next groups are made
    there too. The rooms and banks are the same whichever process draws them (each a pure function of its key), so
    a worker that dies (killed, out of memory) costs speed, not the run: the sampler says so once on stderr and draws
    the rest here."""

    BANKS_AHEAD = 1  # texture banks made in the workers beyond the one of the steps handed to them

    def __init__(self, seed: int, device: torch.device | str = "cpu", textures: str | None = None,
                 texture_steps: int = 8, workers: int = 0):
        """``texture_steps``: a new bank of 48 textures for the rooms of every this many steps (the first word of a
        key; 0: one bank for all, the seed's); see :class:`~worldfromblur.data.synthetic.textures.TextureBanks`.
        ``workers``: processes that draw rooms and banks ahead of their step (0: drawn when needed, here)."""
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"room workers must be a whole number, 0 or more, got {workers!r}")
        self.seed = check_seed(seed)
        self.device = torch.device(device)
        self.banks = TextureBanks(self.seed, texture_steps, texture_photos(textures) if textures else None,
                                  KEYS["stream textures"])
        self._stack: tuple[int, TextureStack] | None = None
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._rooms: dict[tuple, tuple[Future, int]] = {}  # (key, K bytes, H, W) -> (a task's rooms, which one)
        self._bank_futures: dict[int, Future] = {}  # group -> make_texture_bank's result

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:  # spawned, not forked: the training process may hold a CUDA context
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)
        return self._executor

    def close(self) -> None:
        """Stop the worker processes (they start again if the sampler is used again)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._rooms.clear()
        self._bank_futures.clear()

    def _lost_workers(self, err: BaseException) -> None:
        """A worker died and took the pool with it: say so once and draw everything here from now on (the same
        rooms and banks, more slowly), so that a long run keeps training."""
        print(f"warning: a room worker died ({err or type(err).__name__}); drawing the stream's rooms in the training "
              "process from here on (the same rooms, more slowly)", file=sys.stderr)
        if self._executor is not None:
            abandon(self._executor)
            self._executor = None
        self.workers = 0
        self.close()  # what is left of it: the tasks' bookkeeping

    def ahead(self, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int) -> None:
        """Start drawing the rooms of these keys (one step's) in the worker processes, a task per worker, and the
        texture banks of their step's group and of the next (nothing without workers); :meth:`render` takes them."""
        if not self.workers or not keys:
            return
        try:
            self._submit(keys, Ks, H, W)
        except BrokenProcessPool as err:
            self._lost_workers(err)

    def _submit(self, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int) -> None:
        pool = self._pool()
        new = [(k, K, ident) for k, K in zip(keys, Ks) if (ident := _room_id(k, K, H, W)) not in self._rooms]
        for chunk in np.array_split(np.arange(len(new)), min(self.workers, len(new))) if new else []:  # one task each
            todo = [new[j] for j in chunk]
            future = pool.submit(_draw_rooms, self.seed, [t[0] for t in todo], [t[1] for t in todo], H, W)
            for j, (_, _, ident) in enumerate(todo):
                self._rooms[ident] = (future, j)
        if self.banks.rooms:
            first = self.banks.group_of(keys[0][0])
            for group in range(first, first + self.BANKS_AHEAD + 1):
                if group != self.banks.group and group not in self._bank_futures:
                    self._bank_futures[group] = pool.submit(make_texture_bank, self.banks.seed, BANK_SIZE,
                                                            self.banks.photos, self.banks.key_of(group))

    def _textures(self, step: int) -> tuple[list[Texture], TextureStack]:
        group = self.banks.group_of(step)
        made = None
        if group != self.banks.group and group in self._bank_futures:
            try:
                made = result(self._bank_futures.pop(group), self._executor)
            except BrokenProcessPool as err:
                self._lost_workers(err)
        for old in [g for g in self._bank_futures if g < group]:
            self._bank_futures.pop(old).cancel()
        bank = self.banks(step, made)
        if self._stack is None or self._stack[0] != self.banks.group:
            self._stack = (self.banks.group, TextureStack.from_bank(bank, self.device))
        return bank, self._stack[1]

    def _draw(self, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int):
        """The rooms of the keys as :func:`_draw_rooms` gives them: from the workers (all of them at once when not
        started ahead), or drawn here."""
        if self.workers:
            try:
                return self._collect(keys, Ks, H, W)
            except BrokenProcessPool as err:
                self._lost_workers(err)
        return _draw_rooms(self.seed, keys, Ks, H, W)

    def _collect(self, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int):
        """The rooms of the keys from the workers' tasks, in the keys' order."""
        self._submit(keys, Ks, H, W)
        tasks: dict[int, tuple[Future, list[int], list[int]]] = {}  # a task's rooms: where in the batch, which rows
        for at, (k, K) in enumerate(zip(keys, Ks)):
            future, row = self._rooms.pop(_room_id(k, K, H, W))
            task = tasks.setdefault(id(future), (future, [], []))
            task[1].append(at)
            task[2].append(row)
        for old in [i for i in self._rooms if i[0][0] < keys[0][0]]:  # a step that will not come (a jump on resume)
            self._rooms.pop(old)[0].cancel()
        parts, where = [], []
        for future, at, rows in tasks.values():
            packed, R, C = result(future, self._executor)
            parts.append(({k: v[rows] for k, v in packed.items()}, R[rows], C[rows]))
            where += at
        back = np.argsort(where)  # the keys' order
        packed = {k: v[back] for k, v in concat_packed([p[0] for p in parts]).items()}
        return packed, np.concatenate([p[1] for p in parts])[back], np.concatenate([p[2] for p in parts])[back]

    def render(self, keys: list[tuple[int, ...]], Ks: list[np.ndarray], H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sharp frames (B, 3, H, W) sRGB in [0, 1] and exact depth (B, 1, H, W), one new room per key (step, ...),
        whole numbers below 2**32, for an H x W image with its K."""
        packed, R, C = self._draw(keys, Ks, H, W)
        _, textures = self._textures(keys[0][0])  # the keys of one call share a step, so a bank
        sb = SceneBatch.from_arrays(packed, self.device)
        R = torch.tensor(R, dtype=torch.float32, device=self.device)
        C = torch.tensor(C, dtype=torch.float32, device=self.device)
        K = torch.tensor(np.stack(Ks), dtype=torch.float32, device=self.device)
        radiance, depth = raycast_batch(sb, textures, R, C, K, H, W)
        return expose_batch(radiance), depth[:, None]
