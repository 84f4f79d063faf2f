"""A synthetic dataset as a :class:`~worldfromblur.data.build.BuildPlan`."""

from __future__ import annotations

import math
from dataclasses import fields


from ... import __version__
from ..build import BuildPlan, SkipSample, split_scenes
from ..format import DatasetError, SampleRecord
from .engine import KEYS, SyntheticOptions, check_seed, render_sample
from .textures import TextureBanks, texture_photos


def options_from_dict(d: dict) -> SyntheticOptions:
    known = {f.name for f in fields(SyntheticOptions)}
    kw = {k: v for k, v in d.items() if k in known}
    for key in ("rot_speed", "trans_speed"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return SyntheticOptions(**kw)


def synthetic_renderer(seed: int, options: dict):
    """Worker-side factory: builds the texture bank once, returns ``index -> SampleRecord``."""
    opts = options_from_dict(options)
    photos = texture_photos(opts.textures) if opts.textures else None
    banks = TextureBanks(seed, opts.texture_rooms, photos, KEYS["dataset textures"])

    def sample(index: int) -> SampleRecord:
        try:
            s = render_sample(seed, index, opts, banks(index // opts.samples_per_scene))
        except RuntimeError as err:  # a scene with no room for a camera
            raise SkipSample(str(err)) from None
        scene = index // opts.samples_per_scene
        meta = {
            "n": opts.n,
            "fps": opts.fps,
            "subframes": s.subframes,
            "averaging": opts.averaging,
            "scene": f"synthetic-{scene:05d}",
            "provenance": {
                "source": "synthetic",
                "generator": f"world-from-blur {__version__}",
                "seed": seed,
                "index": index,
                "poses": "exact",
                "depth": "exact",
            },
            "stats": {k: round(v, 5) for k, v in s.stats.items()},
        }
        return SampleRecord(s.blurred, s.sharp, s.depth, s.poses, s.K, meta, s.frames)

    return sample


def plan_synthetic(
    opts: SyntheticOptions, num: int, seed: int = 0, splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> BuildPlan:
    try:
        seed = check_seed(seed)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    num_scenes = math.ceil(num / opts.samples_per_scene)
    split = split_scenes(num_scenes, splits, seed)
    request = {"source": "synthetic", "seed": seed, "num": num, "splits": list(splits), "options": opts.to_dict()}
    return BuildPlan(
        source="synthetic",
        request=request,
        num=num,
        scene_of=[f"synthetic-{i // opts.samples_per_scene:05d}" for i in range(num)],
        split_of_scene={f"synthetic-{s:05d}": split[s] for s in range(num_scenes)},
        renderer=synthetic_renderer,
        renderer_args=(seed, opts.to_dict()),
    )
