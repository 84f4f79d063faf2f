"""Procedural furnished rooms at metric scale and an exact ray caster for them.

World frame: x right, y *down* (gravity is +y), z forward, metres; the floor is the plane y = 0 and the ceiling
y = -height. A room is an axis-aligned box seen from inside, furnished with boxes (turned about the vertical),
vertical cylinders, spheres and thin wall panels (pictures, cabinets, doors). Every pixel is one ray through its
centre; its hit distance along a ray whose camera-frame direction has z = 1 *is* the z-depth, so depth is exact.
Shading is Lambertian under one or two point lights near the ceiling plus ambient light, in linear light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .textures import Texture, sample_texture

_EPS = 1e-6


@dataclass
class Surface:
    """How a primitive looks: a texture from the bank, the size of one texel in metres, a tint."""

    texture: int
    texel: float
    tint: np.ndarray
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))


@dataclass
class Box:
    center: np.ndarray  # (3,)
    half: np.ndarray  # (3,) half extents in the box's own frame
    yaw: float  # rotation about the vertical (y) axis, radians
    surface: Surface


@dataclass
class Cylinder:
    center: np.ndarray  # (3,): x, z of the axis; y unused
    radius: float
    y0: float  # top (smaller y, since y points down)
    y1: float  # bottom
    surface: Surface


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    surface: Surface


@dataclass
class Room:
    half_x: float
    half_z: float
    height: float
    surfaces: list[Surface]  # -x, +x, ceiling (-y), floor (+y), -z, +z


@dataclass
class Scene:
    room: Room
    objects: list
    lights: np.ndarray  # (L, 3) positions
    light_power: np.ndarray  # (L,)
    ambient: float


# ------------------------------------------------------------------------------------------------- generation


def _surface(rng: np.random.Generator, bank_size: int, texel=(0.0015, 0.008)) -> Surface:
    tint = np.clip(rng.normal(1.0, 0.12, 3), 0.6, 1.3)
    return Surface(int(rng.integers(bank_size)), float(np.exp(rng.uniform(*np.log(texel)))), tint, rng.random(2) * 10)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_scene(rng: np.random.Generator, bank_size: int) -> Scene:
    """A random furnished room: 3-8 m wide, 3.5-10 m deep, 2.4-3.2 m high, with 4-14 objects and 0-4 panels."""
    hx, hz, h = rng.uniform(1.5, 4.0), rng.uniform(1.75, 5.0), rng.uniform(2.4, 3.2)
    room = Room(hx, hz, h, [_surface(rng, bank_size, (0.002, 0.008)) for _ in range(6)])
    objects: list = []
    for _ in range(int(rng.integers(4, 15))):
        kind = rng.choice(["box", "cylinder", "sphere"], p=[0.55, 0.25, 0.2])
        surf = _surface(rng, bank_size)
        if kind == "box":
            half = np.array([rng.uniform(0.08, 0.8), rng.uniform(0.08, 1.0), rng.uniform(0.08, 0.8)])
            r = max(half[0], half[2]) * 1.42
            x, z = rng.uniform(-hx + r, hx - r) if hx > r else 0.0, rng.uniform(-hz + r, hz - r) if hz > r else 0.0
            lift = rng.uniform(0.3, 1.2) if rng.random() < 0.15 else 0.0  # the odd shelf or wall cabinet
            objects.append(Box(np.array([x, -half[1] - lift, z]), half, float(rng.uniform(0, np.pi)), surf))
        elif kind == "cylinder":
            rad, tall = rng.uniform(0.05, 0.5), rng.uniform(0.2, 2.0)
            x, z = rng.uniform(-hx + rad, hx - rad), rng.uniform(-hz + rad, hz - rad)
            objects.append(Cylinder(np.array([x, 0.0, z]), rad, -tall, 0.0, surf))
        else:
            rad = rng.uniform(0.08, 0.5)
            x, z = rng.uniform(-hx + rad, hx - rad), rng.uniform(-hz + rad, hz - rad)
            objects.append(Sphere(np.array([x, -rad - (rng.uniform(0, 1.0) if rng.random() < 0.3 else 0), z]), rad, surf))
    for _ in range(int(rng.integers(0, 5))):  # thin panels on the walls: pictures, cabinets, doors
        half = np.array([rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.9), rng.uniform(0.01, 0.05)])
        wall = int(rng.integers(4))
        along = rng.uniform(-1, 1)
        y = -rng.uniform(half[1] + 0.1, h - half[1] - 0.1) if h - 2 * half[1] > 0.2 else -h / 2
        if wall < 2:
            x, z, yaw = (-hx + half[2]) if wall == 0 else (hx - half[2]), along * max(hz - half[0], 0), np.pi / 2
        else:
            x, z, yaw = along * max(hx - half[0], 0), (-hz + half[2]) if wall == 2 else (hz - half[2]), 0.0
        objects.append(Box(np.array([x, y, z]), half, yaw, _surface(rng, bank_size)))
    nl = int(rng.integers(1, 3))
    lights = np.stack([rng.uniform(-hx, hx, nl), np.full(nl, -h + 0.15), rng.uniform(-hz, hz, nl)], axis=1)
    return Scene(room, objects, lights, rng.uniform(0.6, 1.4, nl), float(rng.uniform(0.12, 0.35)))


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation of a camera looking along yaw (about +y), pitched down by ``pitch``, rolled."""
    f = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    right = np.cross([0.0, 1.0, 0.0], f)
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    R = np.stack([right, down, f], axis=1)
    c, s = np.cos(roll), np.sin(roll)
    return R @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def inside_any(scene: Scene, p: np.ndarray, margin: float = 0.1) -> bool:
    """Whether point p is inside (or within ``margin`` of) any object."""
    for ob in scene.objects:
        if isinstance(ob, Box):
            local = _yaw_matrix(ob.yaw).T @ (p - ob.center)
            if np.all(np.abs(local) <= ob.half + margin):
                return True
        elif isinstance(ob, Cylinder):
            if np.hypot(p[0] - ob.center[0], p[2] - ob.center[2]) <= ob.radius + margin and ob.y0 - margin <= p[1]:
                return True
        elif np.linalg.norm(p - ob.center) <= ob.radius + margin:
            return True
    return False


# ------------------------------------------------------------------------------------------------- ray casting
# Rays are handled as separate x, y, z component arrays: NumPy reduces along a length-3 axis slowly.


def bounding_sphere(ob) -> tuple[np.ndarray, float]:
    if isinstance(ob, Box):
        return ob.center, float(np.linalg.norm(ob.half))
    if isinstance(ob, Sphere):
        return ob.center, ob.radius
    half_h = (ob.y1 - ob.y0) / 2
    return np.array([ob.center[0], (ob.y0 + ob.y1) / 2, ob.center[2]]), float(np.hypot(ob.radius, half_h))


def _intersect(ob, o: np.ndarray, dx, dy, dz) -> np.ndarray:
    """Distance along each ray to the first hit with ``ob`` (inf where none); origin o (3,), directions by component."""
    inf = np.float32(np.inf)
    if isinstance(ob, Box):
        c, s = np.cos(ob.yaw), np.sin(ob.yaw)
        rel = o - ob.center
        # into the box frame: local = R^T (p - centre), R a rotation about y
        lo = (c * rel[0] - s * rel[2], rel[1], s * rel[0] + c * rel[2])
        ld = (c * dx - s * dz, dy, s * dx + c * dz)
        t_in = np.full(dx.shape, -np.inf, np.float32)
        t_out = np.full(dx.shape, np.inf, np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            for oa, da, h in zip(lo, ld, ob.half):
                inv = 1.0 / da
                t1, t2 = (-h - oa) * inv, (h - oa) * inv
                t_in = np.fmax(t_in, np.fmin(t1, t2))  # fmax/fmin ignore the NaN of 0 * inf
                t_out = np.fmin(t_out, np.fmax(t1, t2))
        return np.where((t_in <= t_out) & (t_in > _EPS), t_in, inf)
    if isinstance(ob, Sphere):
        oc = o - ob.center
        b = dx * oc[0] + dy * oc[1] + dz * oc[2]
        a = dx * dx + dy * dy + dz * dz
        disc = b * b - a * (oc @ oc - ob.radius**2)
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
        return np.where((disc >= 0) & (t > _EPS), t, inf)
    # vertical cylinder: side, then the top cap (the bottom stands on the floor)
    ox, oz = o[0] - ob.center[0], o[2] - ob.center[2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - ob.radius**2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
        y = o[1] + t_side * dy
        t_side = np.where((disc >= 0) & (a > 0) & (t_side > _EPS) & (y >= ob.y0) & (y <= ob.y1), t_side, inf)
        t_cap = (ob.y0 - o[1]) / dy
        px, pz = ox + t_cap * dx, oz + t_cap * dz
        t_cap = np.where((t_cap > _EPS) & (px * px + pz * pz <= ob.radius**2), t_cap, inf)
    return np.nan_to_num(np.minimum(t_side, t_cap), nan=np.inf)


def _attributes(ob, p: np.ndarray):
    """Outward normals (M, 3) and surface coordinates (M, 2), in metres, of points p (M, 3) on ``ob``."""
    if isinstance(ob, Box):
        Rm = _yaw_matrix(ob.yaw).astype(np.float32)
        local = (p - ob.center.astype(np.float32)) @ Rm
        axis = np.abs(local / ob.half).argmax(1)
        rows = np.arange(len(p))
        n_local = np.zeros_like(local)
        n_local[rows, axis] = np.sign(local[rows, axis])
        # texture coordinates: the two coordinates in the face's plane (offset per face so faces differ)
        st = np.where(axis[:, None] == 0, local[:, [2, 1]], np.where(axis[:, None] == 1, local[:, [0, 2]], local[:, [0, 1]]))
        return n_local @ Rm.T.astype(np.float32), st + axis[:, None] * np.float32(1.7)
    if isinstance(ob, Sphere):
        n = (p - ob.center) / ob.radius
        st = np.stack([np.arctan2(n[:, 0], n[:, 2]), np.arcsin(np.clip(n[:, 1], -1, 1))], 1) * ob.radius
        return n, st
    rel = p - ob.center
    on_cap = np.abs(p[:, 1] - ob.y0) < 1e-4
    n = np.where(on_cap[:, None], np.array([0.0, -1.0, 0.0]), np.stack([rel[:, 0], np.zeros(len(p)), rel[:, 2]], 1) / ob.radius)
    st = np.where(on_cap[:, None], rel[:, [0, 2]], np.stack([np.arctan2(rel[:, 0], rel[:, 2]) * ob.radius, p[:, 1]], 1))
    return n, st


def _room_hits(room: Room, o: np.ndarray, d: tuple):
    """Exit distance from inside the room and the face index (see Room.surfaces) per ray."""
    bounds = ((-room.half_x, room.half_x), (-room.height, 0.0), (-room.half_z, room.half_z))
    t_best = np.full(d[0].shape, np.inf, np.float32)
    face = np.zeros(d[0].shape, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, (da, (lo, hi)) in enumerate(zip(d, bounds)):
            t = np.where(da > 0, (hi - o[axis]) / da, np.where(da < 0, (lo - o[axis]) / da, np.inf))
            closer = t < t_best
            t_best = np.where(closer, t, t_best)
            face = np.where(closer, axis * 2 + (da > 0), face)
    return t_best, face


def _screen_box(center_cam: np.ndarray, radius: float, K: np.ndarray, H: int, W: int):
    """Pixel rows and columns that can see a sphere (conservative), or None if none can."""
    x, y, z = center_cam
    if z + radius <= 1e-3:
        return None
    if z - radius <= 0.05:
        return slice(0, H), slice(0, W)
    # x/z over the box [x +- r] x [z +- r] takes its extremes at the corners
    us = [K[0, 0] * (x + a * radius) / (z + b * radius) + K[0, 2] for a in (-1, 1) for b in (-1, 1)]
    vs = [K[1, 1] * (y + a * radius) / (z + b * radius) + K[1, 2] for a in (-1, 1) for b in (-1, 1)]
    c0, c1 = max(int(np.floor(min(us))), 0), min(int(np.ceil(max(us))) + 1, W)
    r0, r1 = max(int(np.floor(min(vs))), 0), min(int(np.ceil(max(vs))) + 1, H)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _cast(scene: Scene, R_wc: np.ndarray, C: np.ndarray, K: np.ndarray, H: int, W: int, stride: int):
    """The rays through the pixel centres and what they hit: world-frame ray components (3 x (h, w)), the hit
    distance along each ray (h, w), the object hit (-1: the room) and the room face hit."""
    vs = np.arange(0, H, stride, dtype=np.float32)
    us = np.arange(0, W, stride, dtype=np.float32)
    xc = ((us - K[0, 2]) / K[0, 0])[None, :].astype(np.float32)  # camera-frame ray, z = 1
    yc = ((vs - K[1, 2]) / K[1, 1])[:, None].astype(np.float32)
    Rf = R_wc.astype(np.float32)
    d = tuple(Rf[i, 0] * xc + Rf[i, 1] * yc + Rf[i, 2] for i in range(3))  # world-frame ray components (h, w)
    h, w = len(vs), len(us)
    t_best, face = _room_hits(scene.room, C, d)
    owner = np.full((h, w), -1)
    Ks = K.copy()
    Ks[:2] /= stride
    for i, ob in enumerate(scene.objects):
        centre, radius = bounding_sphere(ob)
        box = _screen_box(R_wc.T @ (centre - C), radius, Ks, h, w)
        if box is None:
            continue
        t = _intersect(ob, C, d[0][box], d[1][box], d[2][box])
        closer = t < t_best[box]
        t_best[box] = np.where(closer, t, t_best[box])
        owner[box][closer] = i
    return d, t_best, owner, face


def _surfaces_hit(scene: Scene, p: np.ndarray, owner: np.ndarray, face: np.ndarray):
    """Per hit point (N, 3): its surface's normal (sign not yet turned to the viewer) and texture coordinates, and
    the points grouped by surface as (surface index, point indices) into ``room.surfaces + objects' surfaces``."""
    normal = np.zeros_like(p)
    st = np.zeros((len(p), 2), np.float32)
    surf_id = np.where(owner < 0, face, 6 + owner)
    order = np.argsort(surf_id, kind="stable")
    ids, starts = np.unique(surf_id[order], return_index=True)
    groups = list(zip(ids, np.split(order, starts[1:])))
    for sid, sel in groups:
        if sid < 6:  # a room face: axis sid // 2; the texture lies in the other two coordinates
            axis = sid // 2
            normal[sel, axis] = 1.0
            st[sel] = p[sel][:, [(2, 1), (0, 2), (0, 1)][axis]]
        else:
            n_i, st_i = _attributes(scene.objects[sid - 6], p[sel])
            normal[sel], st[sel] = n_i, st_i
    return normal, st, groups


def _light(scene: Scene, C: np.ndarray, t: np.ndarray, d: tuple, normal: tuple) -> np.ndarray:
    """Lambertian shading under the scene's point lights with a soft distance fall-off, plus ambient light."""
    (dx, dy, dz), (nx, ny, nz) = d, normal
    px, py, pz = (C[i] + t * c for i, c in enumerate((dx, dy, dz)))
    light = np.full(len(t), scene.ambient, np.float32)
    for pos, power in zip(scene.lights.astype(np.float32), scene.light_power):
        lx, ly, lz = pos[0] - px, pos[1] - py, pos[2] - pz
        dist2 = lx * lx + ly * ly + lz * lz
        light += np.float32(power) * np.maximum(nx * lx + ny * ly + nz * lz, 0) / (np.sqrt(dist2) * (1.0 + dist2 / 4.0))
    return light


def raycast_depth(scene: Scene, R_wc: np.ndarray, C: np.ndarray, K: np.ndarray, H: int, W: int,
                  stride: int = 1) -> np.ndarray:
    """The z-depth (h, w) float32 that :func:`raycast` returns, without shading: what a camera probe needs, at
    about half the cost (no texture lookups or lights)."""
    return _cast(scene, R_wc, C, K, H, W, stride)[1]


def raycast(
    scene: Scene,
    bank: list[Texture],
    R_wc: np.ndarray,
    C: np.ndarray,
    K: np.ndarray,
    H: int,
    W: int,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast linear radiance and exact z-depth through the centres of an H x W image's pixels.

    Args:
        R_wc: (3, 3) camera-to-world rotation; C: (3,) camera centre in the world.
        K: (3, 3) intrinsics of the H x W image.
        stride: cast only every ``stride``-th row and column (a quick low-resolution probe).

    Returns:
        ``(radiance (h, w, 3) float32, depth (h, w) float32)`` with h = ceil(H / stride), w = ceil(W / stride).
    """
    d, t_best, owner, face = _cast(scene, R_wc, C, K, H, W, stride)
    h, w = t_best.shape
    t_flat = t_best.ravel()
    dirs = np.stack([c.ravel() for c in d], 1)
    p = C.astype(np.float32) + t_flat[:, None] * dirs  # float32 is ample: micrometres over a room
    normal, st, groups = _surfaces_hit(scene, p, owner.ravel(), face.ravel())
    surfaces = scene.room.surfaces + [ob.surface for ob in scene.objects]

    dx, dy, dz = (c.ravel() for c in d)
    nx, ny, nz = normal[:, 0].copy(), normal[:, 1].copy(), normal[:, 2].copy()
    ray_len = np.sqrt(dx * dx + dy * dy + dz * dz)
    facing = nx * dx + ny * dy + nz * dz
    flip = np.where(facing > 0, np.float32(-1), np.float32(1))  # normals turned to face the viewer
    nx, ny, nz = nx * flip, ny * flip, nz * flip
    cos_in = np.abs(facing) / ray_len
    footprint = t_flat * ray_len * (stride / K[0, 0]) / np.maximum(cos_in, 0.25)  # metres one pixel covers
    albedo = np.empty((len(p), 3), np.float32)
    for sid, sel in groups:
        s = surfaces[sid]
        tex = bank[s.texture]
        level = np.clip(np.round(np.log2(np.maximum(footprint[sel] / s.texel, 1e-6))), 0, len(tex.levels) - 1).astype(int)
        coords = (st[sel] + s.offset.astype(np.float32)) * np.float32(1.0 / s.texel)
        albedo[sel] = sample_texture(tex, coords[:, 0], coords[:, 1], level) * s.tint.astype(np.float32)
    light = _light(scene, C, t_flat, (dx, dy, dz), (nx, ny, nz))
    return (albedo * light[:, None]).reshape(h, w, 3), t_best.reshape(h, w)
