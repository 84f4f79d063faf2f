"""Running a dataset build: the output folder's rules, workers, progress, resume, and the manifest.

Every builder (synthetic, TUM, ICL-NUIM, NYU) describes its build as a :class:`BuildPlan` and hands it to
:func:`run_build`, which owns the rules a user relies on:

* a folder that already holds a dataset is never touched without ``overwrite``; a folder that holds anything else
  is never touched at all;
* samples are rendered by worker processes and each one is written atomically by the worker itself;
* an interrupted build is resumed by running the same command: finished samples are kept, the rest are built;
* the manifest is written last, so a dataset with a manifest is complete.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..errors import WfbError
from .format import FORMAT_NAME, FORMAT_VERSION, SPLITS, SampleRecord, write_json_atomic, write_sample


@dataclass
class BuildPlan:
    """What to build.

    Attributes:
        source: the builder's name ("synthetic", "tum", ...).
        request: everything that decides the content (options, seed, inputs); saved as build.json, and a resume must
            present the same.
        num: number of samples; sample ``i`` gets id ``f"{i:06d}"``.
        scene_of: scene label of each sample index (samples of one scene always share a split).
        split_of_scene: split ("train", "val" or "test") of each scene label.
        renderer: a picklable top-level factory; ``renderer(*renderer_args)`` is called once in each worker and
            returns a function ``index -> SampleRecord``, or raises :class:`SkipSample` to skip that index.
    """

    source: str
    request: dict
    num: int
    scene_of: Callable[[int], str] | list[str]
    split_of_scene: dict[str, str]
    renderer: Callable
    renderer_args: tuple = ()


class SkipSample(Exception):
    """Raised by a renderer for an index that cannot give a usable sample; the reason is counted in the manifest."""


def split_scenes(num_scenes: int, fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Assign whole scenes to splits by a seeded permutation; every split gets a scene once there are >= 3."""
    _, f_val, f_test = fractions
    n_val = round(num_scenes * f_val)
    n_test = round(num_scenes * f_test)
    if num_scenes >= 3:
        n_val, n_test = max(n_val, 1 if f_val > 0 else 0), max(n_test, 1 if f_test > 0 else 0)
    order = np.random.default_rng([seed, 104729]).permutation(num_scenes)
    split = ["train"] * num_scenes
    for rank, scene in enumerate(order):
        split[scene] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return split


def sample_id(index: int) -> str:
    return f"{index:06d}"


# ------------------------------------------------------------------------------------------------- the output folder


def _same_request(out: Path, request: dict) -> bool:
    try:
        previous = json.loads((out / "build.json").read_text())
    except (OSError, ValueError):
        return False
    return previous == json.loads(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, **request}))


def prepare_output(out: Path, request: dict, overwrite: bool) -> bool:
    """Make ``out`` ready; returns True when an interrupted build with the same request is being resumed."""
    stamp = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **request}
    build_json = out / "build.json"
    if out.exists() and not out.is_dir():
        raise WfbError(f"{out}: exists and is a file; choose a folder for --out")
    if out.exists() and any(out.iterdir()):
        ours = build_json.is_file() or (out / "manifest.json").is_file()
        if not ours:
            raise WfbError(f"{out}: exists and is not a world-from-blur dataset; choose a new or empty folder for --out")
        if (out / "manifest.json").is_file() and not overwrite:
            raise WfbError(f"{out}: already holds a dataset; pass --overwrite to replace it, or choose another --out")
        if not (out / "manifest.json").is_file() and not overwrite:
            try:
                previous = json.loads(build_json.read_text())
            except ValueError:
                previous = None
            if _same_request(out, request):
                for tmp in (out / "samples").glob(".tmp-*"):
                    shutil.rmtree(tmp)
                return True
            keys = sorted(k for k in set(stamp) | set(previous or {}) if (previous or {}).get(k) != stamp.get(k))
            raise WfbError(
                f"{out}: holds an interrupted build made with other options (differs in: {', '.join(keys)}); "
                "rerun with the same options to resume it, or pass --overwrite to start again"
            )
        for name in ("samples", "manifest.json", "build.json", "manifest.json.tmp"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (out / "samples").mkdir(parents=True, exist_ok=True)
    write_json_atomic(build_json, stamp)
    return False


# ------------------------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(renderer, renderer_args, samples_dir: str) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription
    _WORKER["render"] = renderer(*renderer_args)
    _WORKER["samples_dir"] = Path(samples_dir)


def _work(index: int) -> tuple[int, str | None]:
    sid = sample_id(index)
    try:
        rec: SampleRecord = _WORKER["render"](index)
    except SkipSample as why:
        (_WORKER["samples_dir"] / f"{sid}.skipped").write_text(str(why) + "\n")
        return index, str(why)
    write_sample(_WORKER["samples_dir"], sid, rec)
    return index, None


def _work_run(indices: list[int]) -> list[tuple[int, str | None]]:
    return [_work(i) for i in indices]


def _runs(todo: list[int], workers: int, longest: int = 8) -> list[list[int]]:
    """``todo`` in runs of consecutive samples, at most ``longest`` and about four per worker: a worker that builds
    neighbouring RGB-D windows reads their shared frames once (:class:`~worldfromblur.data.rgbd.build.FrameCache`).

    >>> _runs([0, 1, 2, 3, 4, 7, 8, 9], workers=1)
    [[0, 1], [2, 3], [4], [7, 8], [9]]
    """
    size = max(1, min(longest, len(todo) // (4 * workers)))
    runs: list[list[int]] = []
    for i in todo:
        if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < size:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _done(samples_dir: Path, index: int) -> bool:
    sid = sample_id(index)
    return (samples_dir / sid).is_dir() or (samples_dir / f"{sid}.skipped").is_file()


def run_build(out: Path, plan: BuildPlan, workers: int = 2, overwrite: bool = False, progress: bool = True,
              reuse: bool = False) -> dict:
    """Build (or resume) the dataset in ``out`` and return its manifest. ``reuse``: a finished build in ``out`` made
    with the same request is kept as it is (one made with another is still refused)."""
    out = Path(out)
    if reuse and not overwrite and (out / "manifest.json").is_file() and _same_request(out, plan.request):
        return json.loads((out / "manifest.json").read_text())
    resumed = prepare_output(out, plan.request, overwrite)
    samples_dir = out / "samples"
    todo = [i for i in range(plan.num) if not _done(samples_dir, i)]
    if resumed:
        print(f"resuming {out}: {plan.num - len(todo)} of {plan.num} samples already built", file=sys.stderr)
    bar = tqdm(total=len(todo), desc=f"{plan.source} samples", unit="sample", disable=not progress, file=sys.stderr)
    if workers <= 1 or len(todo) <= 1:
        _init_worker(plan.renderer, plan.renderer_args, str(samples_dir))
        for i in todo:
            _work(i)
            bar.update()
    elif todo:
        # spawn: safe with torch's threads and the same on every platform. An executor (not mp.Pool) fails
        # cleanly if a worker dies instead of replacing it forever.
        ctx = mp.get_context("spawn")
        init = (plan.renderer, plan.renderer_args, str(samples_dir))
        try:
            with ProcessPoolExecutor(min(workers, len(todo)), ctx, _init_worker, init) as pool:
                for future in as_completed([pool.submit(_work_run, run) for run in _runs(todo, workers)]):
                    bar.update(len(future.result()))
        except BrokenProcessPool as err:
            raise WfbError(f"a build worker died ({err}); finished samples are kept, rerun the command to resume") from None
    bar.close()
    manifest = make_manifest(out, plan)
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


# ------------------------------------------------------------------------------------------------- manifest


def summarize(values: dict[str, list[float]]) -> dict:
    """Percentiles of each per-sample statistic, for the manifest and the build summary."""
    out = {}
    for key, vals in sorted(values.items()):
        a = np.asarray(vals, dtype=float)
        out[key] = {q: round(float(np.percentile(a, p)), 4) for q, p in (("p05", 5), ("p50", 50), ("p95", 95))}
        out[key].update(min=round(float(a.min()), 4), max=round(float(a.max()), 4), mean=round(float(a.mean()), 4))
    return out


def make_manifest(out: Path, plan: BuildPlan) -> dict:
    samples_dir = out / "samples"
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    scenes, skipped = {}, {}
    stats: dict[str, list[float]] = {}
    for i in range(plan.num):
        sid = sample_id(i)
        skip = samples_dir / f"{sid}.skipped"
        if skip.is_file():
            skipped[sid] = skip.read_text().strip()
            continue
        scene = plan.scene_of[i] if isinstance(plan.scene_of, list) else plan.scene_of(i)
        scenes[sid] = scene
        splits[plan.split_of_scene[scene]].append(sid)
        meta = json.loads((samples_dir / sid / "meta.json").read_text())
        for key, value in meta.get("stats", {}).items():
            stats.setdefault(key, []).append(value)
        stats.setdefault("subframes", []).append(meta.get("subframes", 1))
    reasons: dict[str, int] = {}
    for why in skipped.values():
        reasons[why] = reasons.get(why, 0) + 1
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source": plan.source,
        "created_by": f"world-from-blur {__version__}",
        "request": plan.request,
        "num_samples": len(scenes),
        "splits": splits,
        "scenes": scenes,
        "skipped": skipped,
        "skipped_reasons": reasons,
        "statistics": summarize(stats) if stats else {},
    }


def format_summary(manifest: dict, keys: tuple[str, ...] | None = None) -> str:
    """A short text summary of a manifest: counts per split, skips, and the spread of each statistic."""
    lines = [
        f"{manifest['num_samples']} samples ("
        + ", ".join(f"{s} {len(manifest['splits'][s])}" for s in SPLITS)
        + f"), {len(set(manifest['scenes'].values()))} scenes, {len(manifest['skipped'])} skipped"
    ]
    for why, count in sorted(manifest.get("skipped_reasons", {}).items()):
        lines.append(f"  skipped {count}: {why}")
    stats = manifest.get("statistics", {})
    if stats:
        lines.append(f"  {'statistic':<26}{'p05':>9}{'median':>9}{'p95':>9}{'max':>9}")
        for key in keys or stats:
            if key in stats:
                s = stats[key]
                lines.append(f"  {key:<26}{s['p05']:>9.3g}{s['p50']:>9.3g}{s['p95']:>9.3g}{s['max']:>9.3g}")
    return "\n".join(lines)
