"""One experiment, one path: a recipe (typed) trains its stages, evaluates the result and exports a model.

``wfb train-model`` runs a recipe; ``wfb train`` runs a training config as a recipe of one stage. A recipe is YAML
with three parts::

    base:      a training config (any key of TrainConfig) shared by every stage
    stages:    a list of {name, share, config}: each stage's own keys, and its share of the training time
    evaluate:  {samples, seed, batch_size, unseen_rooms, rooms, videos, refine}: the evaluations after training

and reads into a :class:`Recipe`, whose stages hold complete :class:`~worldfromblur.training.config.TrainConfig`\\ s.
The shipped recipes live in ``worldfromblur/recipes`` (``wfb train-model compact`` finds one by name). Command-line
``key=value`` overrides apply to ``base`` (``evaluate.samples=N`` to the evaluation). A module's ``init`` may be
``shipped``: the model shipped with the package (the shipped ``compact`` recipe continues from it).

The run folder of a recipe (``wfb train-model``)::

    OUT/recipe.yaml     the resolved recipe and budget (a resume reads this one, not the command line's)
    OUT/stages/NAME/    each stage's run: config, checkpoints, TensorBoard logs
    OUT/eval.json       the evaluation (also printed)
    OUT/model/          the exported model (model.safetensors + config.yaml): ``--checkpoint OUT`` reads it

A one-stage run of ``wfb train`` keeps its stage in OUT itself (config.yaml, checkpoints/, tb/) beside eval.json
and model/.

Evaluation. A stream-fed run is scored on stream samples made from the pool's held-out frames (a seed no training
step used); a dataset-fed run on the dataset's ``val`` split (none: not evaluated). Both go through
:func:`worldfromblur.evaluation.report.score_models`, with the median depth of the training data as the constant
depth reference.

Budget (``--minutes``). Each stage gets its share of the minutes left when it starts (after the pool is built and
earlier stages ran), less a reserve for evaluation and export; inside a stage the trainer times its first steps and
sets max_steps to fit (:class:`worldfromblur.training.trainer.Budget`). Later stages start from the previous stage's
weights.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..checkpoint import checkpoint_dirs
from ..data import BlurDataset, DatasetError
from ..data.build import run_build
from ..data.pool import TrainingDepths, build_pool, held_out_frames
from ..data.stream import BlurStream
from ..data.synthetic import SyntheticOptions, plan_synthetic
from ..devices import resolve_device
from ..errors import WfbError
from ..evaluation.report import evaluate, median_depth, refiner, score_models
from ..evaluation.video import WINDOW_EVERY, compare_video, evaluate_video, frame_paths
from ..imaging import psnr
from ..models.io import (
    export_model,
    load_model,
    model_config_of,
    resolve_checkpoint,
    shipped_model,
)
from ..reconstruct.refine import DEFAULT_STEPS
from .config import (
    TrainConfig,
    apply_override,
    config_from_dict,
    read_yaml,
    section_from_dict,
    shipped_names,
)
from .sources import open_photos, stream_options
from .trainer import train

EVAL_RESERVE_S = 30.0
UNSEEN_RENDER_CORE_S = 1.5
"""Seconds a time budget keeps per unseen-room sample to render it, per CPU core (measured about 1 s at 160 x 120)."""
SCORE_S = {"cpu": 0.5, "cuda": 0.1}
"""Seconds a time budget keeps per held-out or unseen-room sample to score it with two models, by device type. On
2 CPU cores (2 threads) the ICL-NUIM room's 133 windows at 160 x 120 took 0.50 s a sample (2026-12-07, release 5:
the depth's mirror image, the path head's pose solve, the blur-length references); the CUDA figure is not measured."""
REFINE_STEP_S = {"cpu": 0.125, "cuda": 0.1}
"""Seconds a time budget keeps per held-out sample and refinement iteration, for two models, by device type (2 CPU
cores: 15 iterations took 1.84 s a sample on the same windows; the CUDA figure is not measured)."""
VIDEO_WINDOW_S = 6.0
"""Seconds a time budget keeps per blurred window of ``evaluate.videos``: its truth, and both models with
refinement (about 1.5 s and 2 x 2 s on 2 CPU cores at 1280 x 720)."""


@dataclass
class EvaluateConfig:
    samples: int = 128
    """Stream samples to score (a dataset's whole ``val`` split is scored)."""
    seed: int = 1_000_003
    """Seed of the evaluation's stream samples (no training step uses it), and of the unseen rooms."""
    batch_size: int = 8
    unseen_rooms: int = 0
    """Also score the trained model and the shipped one on this many samples of procedural rooms that no pool can
    contain (``wfb make-dataset synthetic`` generator keys, seed ``seed``, at the model's input size), rendered after
    training into ``OUT/unseen-rooms``; ``eval.json`` then says whether the model beats the shipped one there
    (:func:`compare_models`). 0: not done."""
    rooms: list = field(default_factory=list)
    """Built datasets (``wfb make-dataset``) of whole rooms that no training pool contains, each scored on its
    ``test`` split after training, beside the shipped model: ``eval.json`` ``rooms``. With these or ``unseen_rooms``
    the report ends with ``ship``: whether the model beats the shipped one (:func:`ship_verdict`)."""
    videos: list = field(default_factory=list)
    """Folders of consecutive frames of hand-held high-frame-rate video that no pool contains (real camera blur),
    each cut into blurred windows and scored after training beside the shipped model by the rotation axis that
    ``wfb reconstruct`` (with refinement) recovers, against the rotation measured from the sharp frames
    (:mod:`worldfromblur.evaluation.video`): ``eval.json`` ``videos``. A model whose median axis error there is
    higher than the shipped model's by more than 10 % is not shipped. About 2 s a window and model on 2 CPU cores
    (a 300-frame video has 29 windows)."""
    refine: int = DEFAULT_STEPS
    """On the unseen and held-out rooms, also score each model's trajectory after ``wfb reconstruct``'s test-time
    refinement with this many iterations (its default), and judge rotation by it: refinement is on by default, so
    that is the rotation a user gets. 0: judge the network's own trajectory (faster)."""


@dataclass
class Stage:
    name: str
    share: float
    """Share of the training time (of the minutes left when the stage starts, among the stages left)."""
    config: TrainConfig


@dataclass
class Recipe:
    stages: list[Stage]
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    source: dict = field(default_factory=dict)
    """The mapping the recipe was read from (saved with the run; a resume reads it back)."""
    flat: bool = False
    """One stage kept in the run folder itself (``wfb train``) instead of ``OUT/stages/NAME``."""

    def stage_dir(self, out: Path, stage: Stage) -> Path:
        return out if self.flat else out / "stages" / stage.name

    @property
    def last(self) -> TrainConfig:
        return self.stages[-1].config


def shipped_recipes() -> list[str]:
    return shipped_names("worldfromblur.recipes")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def recipe_from_dict(data: dict, where: str = "recipe") -> Recipe:
    """A typed recipe from its mapping; every stage's config is checked here, before anything runs."""
    if not isinstance(data, dict):
        raise WfbError(f"{where}: a recipe must be a mapping with base, stages and evaluate")
    unknown = sorted(set(data) - {"base", "stages", "evaluate"})
    if unknown or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise WfbError(f"{where}: a recipe has base, stages (a non-empty list) and evaluate; "
                       f"{'unknown key(s) ' + ', '.join(unknown) if unknown else 'stages is missing or empty'}")
    base, ev = data.get("base") or {}, data.get("evaluate") or {}
    evaluate = section_from_dict(EvaluateConfig, ev, f"{where}.evaluate")
    if not isinstance(evaluate.refine, int) or evaluate.refine < 0:
        raise WfbError(f"{where}.evaluate.refine must be 0 (off) or a number of iterations, got {evaluate.refine!r}")
    stages, names = [], set()
    for i, st in enumerate(data["stages"]):
        if not isinstance(st, dict) or "name" not in st or float(st.get("share", 0)) <= 0:
            raise WfbError(f"{where}: stage {i + 1} needs a name and a positive share")
        if st["name"] in names:
            raise WfbError(f"{where}: two stages are named {st['name']!r}")
        names.add(st["name"])
        cfg = config_from_dict(_merge(base, st.get("config", {})), f"{where} stage {st['name']}")
        stages.append(Stage(str(st["name"]), float(st["share"]), cfg))
    return Recipe(stages, evaluate, copy.deepcopy(data))


def read_recipe(path_or_name: str, overrides: list[str] = ()) -> Recipe:
    """A recipe file or shipped name, with ``overrides`` applied to its base (``evaluate.KEY=VALUE`` to the
    evaluation)."""
    data, where = read_yaml(path_or_name, "worldfromblur.recipes", "recipe")
    if isinstance(data, dict):
        data.setdefault("base", {})
        data.setdefault("evaluate", {})
        for o in overrides:
            apply_override(data if o.startswith("evaluate.") else data["base"], o)
    return recipe_from_dict(data, where)


def one_stage(cfg: TrainConfig) -> Recipe:
    """A training config as a recipe of one stage, kept in ``cfg.out`` (``wfb train``)."""
    return Recipe([Stage(cfg.stage, 1.0, cfg)], EvaluateConfig(), {"config": cfg.to_dict()}, flat=True)


# ------------------------------------------------------------------------------------------------- the path


def run_recipe(recipe: Recipe, out: str | Path, minutes: float | None = None, resume: bool = False,
               progress: bool = True, how: dict | None = None) -> dict | None:
    """Train every stage (within ``minutes`` when given, else each to its own max_steps or minutes), evaluate, and
    export ``OUT/model``, its provenance saying ``how`` it was asked for (default: the recipe's mapping). Returns
    the evaluation report (None on the other ranks under torchrun, and when there is nothing to evaluate on)."""
    t_start = time.perf_counter()
    out = Path(out)
    prev = None
    for i, st in enumerate(recipe.stages):
        run_dir = recipe.stage_dir(out, st)
        cfg = copy.deepcopy(st.config)
        cfg.out = str(run_dir)
        if minutes is not None:
            left_s = minutes * 60 - (time.perf_counter() - t_start) - eval_reserve_s(recipe)
            share = st.share / sum(s.share for s in recipe.stages[i:])
            cfg.minutes = max(left_s * share / 60, 0.05)
            if progress:
                print(f"stage {st.name} ({cfg.stage}): {cfg.minutes:.1f} min", file=sys.stderr)
        if prev is not None:
            cfg.init = {m: str(prev) for m in ("deblur", "depth", "motion")}
        # a recipe's stage folder with checkpoints is an interrupted stage (train_model checked OUT); a one-stage
        # run folder is resumed only when asked, as wfb train always did
        train(cfg, resume=resume if recipe.flat else bool(checkpoint_dirs(run_dir)), progress=progress)
        prev = run_dir
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return _evaluate_and_export(recipe, out, prev, t_start, progress, how)


def _evaluate(recipe: Recipe, out: Path, model: Path, progress: bool) -> dict | None:
    """Every evaluation the recipe asks for of ``model`` (a run's last stage, or its exported model), with the ship
    verdict where it has unseen or held-out rooms; None when there is nothing to evaluate on."""
    report = evaluate_run(model, recipe, progress)
    if recipe.evaluate.unseen_rooms > 0:
        unseen = evaluate_unseen_rooms(model, recipe.evaluate, out / "unseen-rooms", recipe.last.device, progress)
        report = (report or {}) | {"unseen_rooms": unseen}
    if recipe.evaluate.rooms:
        report = (report or {}) | {"rooms": evaluate_rooms(model, recipe.evaluate, recipe.last.device, progress)}
    if recipe.evaluate.videos:
        report = (report or {}) | {"videos": evaluate_videos(model, recipe.evaluate, recipe.last.device, progress)}
    if report is not None and any(k in report for k in ("unseen_rooms", "rooms", "videos")):
        report["ship"] = ship_verdict(report)
    return report


def _judged(report: dict | None) -> dict:
    """What a model's provenance keeps of its evaluation: its scores and the verdicts."""
    if report is None:
        return {}
    out = {}
    if "models" in report:
        out["evaluation"] = {k: v for k, v in report["models"]["model"].items() if k != "checkpoint"}
    if "unseen_rooms" in report:
        out["unseen_rooms"] = report["unseen_rooms"]["verdict"]
    for key in ("rooms", "videos"):
        if key in report:
            out[key] = {k: v["verdict"] for k, v in report[key].items()}
    return out


def _evaluate_and_export(recipe: Recipe, out: Path, prev: Path, t_start: float, progress: bool,
                         how: dict | None) -> dict | None:
    """The evaluations of a trained run (its last stage in ``prev``), ``OUT/eval.json`` and ``OUT/model``."""
    report = _evaluate(recipe, out, prev, progress)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a resumed run re-exports its final weights
    provenance = {"recipe": how or recipe.source, "device": _device_name(), "samples_seen": _samples_seen(out, recipe)}
    if report is not None:
        report["minutes_used"] = (time.perf_counter() - t_start) / 60
        (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
    export_model(prev, model_dir, provenance=provenance | _judged(report))
    return report


def reevaluate(out: str | Path, overrides: list[str] = (), progress: bool = True) -> dict | None:
    """``wfb train-model --reevaluate``: a finished run's exported model (``OUT/model``) evaluated and judged again,
    without training: after the evaluation changed, with other ``evaluate.KEY=VALUE`` settings, or for a GPU window
    judged back on a CPU. The former ``eval.json`` is kept as ``eval-N.json``; ``OUT/model`` keeps its weights and
    gets the new verdicts in its provenance (``reevaluated``: the overrides)."""
    t_start = time.perf_counter()
    out = Path(out)
    saved, model_dir = out / "recipe.yaml", out / "model"
    if not saved.is_file():
        raise WfbError(f"{out}: not a wfb train-model run (no recipe.yaml); give the --out of a finished run")
    if not (model_dir / "model.safetensors").is_file():
        raise WfbError(f"{out}: has no exported model (OUT/model); finish the run with --resume first")
    bad = [o for o in overrides if not o.startswith("evaluate.")]
    if bad:
        raise WfbError(f"--reevaluate changes only evaluate.KEY=VALUE settings, not {bad[0]!r}; "
                       "train a new run for that")
    data = copy.deepcopy(yaml.safe_load(saved.read_text())["recipe"])
    data.setdefault("evaluate", {})
    for o in overrides:
        apply_override(data, o)
    recipe = recipe_from_dict(data, str(saved))
    _check_rooms(recipe)
    report = _evaluate(recipe, out, model_dir, progress)
    if report is None:
        raise WfbError(f"{out}: its recipe evaluates on nothing (no held-out frames, unseen rooms, rooms or videos)")
    report["minutes_used"] = (time.perf_counter() - t_start) / 60
    previous = out / "eval.json"
    if previous.exists():
        n = next(k for k in range(1, 10_000) if not (out / f"eval-{k}.json").exists())
        previous.rename(out / f"eval-{n}.json")
        if progress:
            print(f"the former evaluation is kept as {out / f'eval-{n}.json'}", file=sys.stderr)
    (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
    provenance = yaml.safe_load((model_dir / "config.yaml").read_text()).get("provenance") or {}
    provenance |= _judged(report) | {"reevaluated": list(overrides)}
    fresh, old = out / ".model-reevaluated", out / ".model-before"
    for d in (fresh, old):
        shutil.rmtree(d, ignore_errors=True)
    export_model(model_dir, fresh, provenance=provenance)
    model_dir.rename(old)
    fresh.rename(model_dir)
    shutil.rmtree(old)
    return report


def train_model(recipe_name: str, out: str | Path, minutes: float, overrides: list[str] = (), resume: bool = False,
                progress: bool = True) -> dict | None:
    """``wfb train-model``: a recipe within ``minutes``; a resume reads the recipe the run was started with."""
    out = Path(out)
    if minutes <= 0:
        raise WfbError(f"--minutes must be positive, got {minutes}")
    saved = out / "recipe.yaml"
    if resume:
        if not saved.is_file():
            raise WfbError(f"{out}: nothing to resume (no recipe.yaml); start it without --resume")
        state = yaml.safe_load(saved.read_text())
        recipe, minutes = recipe_from_dict(state["recipe"], str(saved)), float(state["minutes"])
    else:
        if out.exists() and any(out.iterdir()):
            raise WfbError(f"{out}: already exists and is not empty; pass --resume to continue it, or choose a new --out")
        recipe = read_recipe(recipe_name, overrides)
        _check_rooms(recipe)  # before the budget, which counts their samples
        _check_budget(recipe, minutes)
        _check_pools(recipe)
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(yaml.safe_dump({"recipe": recipe.source, "minutes": minutes, "source": str(recipe_name),
                                         "overrides": list(overrides)}, sort_keys=False))
    return run_recipe(recipe, out, minutes, progress=progress, how=yaml.safe_load(saved.read_text()))


def _render_workers() -> int:
    """Processes that render the unseen rooms: the CPU cores, at most 16."""
    return max(1, min(os.cpu_count() or 1, 16))


def eval_reserve_s(recipe: Recipe) -> float:
    """Seconds a time budget keeps for the evaluations after training, on the device the last stage trains on. The
    CPU's per-sample figures were measured with PyTorch on 2 threads; a run held to one (OMP_NUM_THREADS=1, two runs
    side by side) scores at about half speed."""
    rooms = sum(_room_samples(r) for r in recipe.evaluate.rooms)
    ev = recipe.evaluate
    windows = sum(len(frame_paths(Path(str(v)))) // WINDOW_EVERY for v in ev.videos)
    kind = "cuda" if resolve_device(recipe.last.device, "device").startswith("cuda") else "cpu"
    slower = 2 / min(max(torch.get_num_threads(), 1), 2) if kind == "cpu" else 1.0
    return (EVAL_RESERVE_S + ev.unseen_rooms * UNSEEN_RENDER_CORE_S / _render_workers()
            + slower * ((ev.unseen_rooms + rooms) * (SCORE_S[kind] + ev.refine * REFINE_STEP_S[kind])
                        + windows * VIDEO_WINDOW_S))


def _room_samples(root) -> int:
    """The test samples of a dataset of ``evaluate.rooms``; a folder that is not one stops the run in one line."""
    try:
        return len(BlurDataset(Path(str(root)), split="test"))
    except DatasetError as err:
        raise WfbError(f"evaluate.rooms: {err}") from None


def _check_budget(recipe: Recipe, minutes: float) -> None:
    least = eval_reserve_s(recipe) + 6 * len(recipe.stages)
    if minutes * 60 < least:
        # rounded up to a tenth, so that the minimum named is one this check accepts
        raise WfbError(f"--minutes {minutes} is too short for {len(recipe.stages)} stage(s) and the evaluation; "
                       f"give at least {math.ceil(least / 6) / 10:.1f}")


def _check_pools(recipe: Recipe) -> None:
    """Every pool folder a stage names is a readable pool, some frames are held out and the stream's options are
    valid, before anything is written."""
    for st in recipe.stages:
        cfg = st.config
        if cfg.data.source != "stream":
            continue
        stream_options(cfg)  # unknown keys and bad values: one line naming data.stream
        if cfg.data.held_out <= 0:
            raise WfbError("data.held_out must be above 0: train-model evaluates on held-out frames (e.g. 0.05)")
        try:
            held = held_out_frames(cfg.data.pool, cfg.data.held_out)
        except DatasetError as err:
            raise WfbError(f"data.pool: {err}") from None
        if held == 0 and st is recipe.stages[-1]:
            raise WfbError(f"data.held_out={cfg.data.held_out} holds no frame of data.pool out for the evaluation "
                           f"(each source needs at least 1 / held_out frames); raise data.held_out or add frames")


def _check_rooms(recipe: Recipe) -> None:
    """``evaluate.rooms`` is a list of built datasets, each with test samples, and ``evaluate.videos`` a list of
    folders of video frames, before anything is written."""
    videos = recipe.evaluate.videos
    if not isinstance(videos, list):
        raise WfbError(f"evaluate.videos must be a list of folders of video frames, e.g. 'evaluate.videos=[clip]', "
                       f"got {videos!r}")
    for v in videos:
        try:
            frame_paths(Path(str(v)), verify=True)
        except WfbError as err:
            raise WfbError(f"evaluate.videos: {err}") from None
    rooms = recipe.evaluate.rooms
    if not isinstance(rooms, list):
        raise WfbError(f"evaluate.rooms must be a list of dataset folders, e.g. 'evaluate.rooms=[data/room]', got {rooms!r}")
    for root in rooms:
        if _room_samples(root) == 0:
            raise WfbError(f"evaluate.rooms: {root} has no test samples; build it with --splits 0 0 1")


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"


def _samples_seen(out: Path, recipe: Recipe) -> dict:
    seen = {}
    for st in recipe.stages:
        cfg = yaml.safe_load((recipe.stage_dir(out, st) / "config.yaml").read_text())
        seen[st.name] = int(cfg["max_steps"]) * int(cfg["batch_size"])
    return seen


# ------------------------------------------------------------------------------------------------- evaluation


def evaluate_run(run_dir: Path, recipe: Recipe, progress: bool = True) -> dict | None:
    """The trained model scored by :func:`~worldfromblur.evaluation.report.score_models` on data it did not train
    on: stream samples from the pool's held-out frames, or the dataset's ``val`` split (None when it has none)."""
    cfg, ev = recipe.last, recipe.evaluate
    device = torch.device(resolve_device(cfg.device, "device"))
    if cfg.data.source == "photos":
        report = evaluate_photos(run_dir, cfg, ev, device)
    elif cfg.data.source == "stream":
        model, sources = load_model(run_dir)
        _, held = build_pool(cfg.data.pool, cfg.seed, cfg.data.held_out, progress=False, held_out_only=True,
                             **cfg.data.synthetic())
        if held is None:
            raise WfbError("data.held_out leaves no frames to evaluate on; set it above 0 (e.g. 0.05)")
        stream = BlurStream(held, stream_options(cfg), ev.seed, device)
        steps = -(-ev.samples // ev.batch_size)
        reference = median_depth(TrainingDepths(cfg.data.pool, cfg.seed, cfg.data.held_out, **cfg.data.synthetic()))
        scores = score_models([("model", model, sources)], lambda: (stream.batch(s, ev.batch_size) for s in range(steps)),
                              reference, device, progress=False, total=steps)
        report = {"data": "held-out stream", "held_out_frames": len(held), "samples": steps * ev.batch_size,
                  "seed": ev.seed}
    else:
        try:
            has_val = len(BlurDataset(cfg.data.root, split="val")) > 0
        except DatasetError:
            has_val = False
        if not has_val:
            if progress:
                print(f"{cfg.data.root} has no val split: not evaluated", file=sys.stderr)
            return None
        scores = evaluate([("model", str(run_dir))], Path(cfg.data.root), "val", device, ev.batch_size, progress=False)
        report, reference = {"data": f"{cfg.data.root} (val)", "samples": scores["num_samples"]}, scores["median_train_depth_m"]
    if cfg.data.source != "photos":
        report |= {"median_depth_m": reference, "models": scores["models"], "references": scores["references"]}
    if progress:
        print(format_evaluation(report), file=sys.stderr)
    return report


def evaluate_unseen_rooms(run_dir: Path, ev: EvaluateConfig, root: Path, device: str, progress: bool = True) -> dict:
    """The trained model (``run_dir``) and the shipped one scored on ``ev.unseen_rooms`` samples of procedural rooms
    that no pool can contain, rendered into ``root`` at the trained model's input size (a resumed run reuses
    them), with :func:`compare_models`' verdict."""
    cfg = model_config_of(resolve_checkpoint(run_dir))  # the size only: evaluate() loads the model
    W, H = cfg.input_size or (160, 120)
    opts = SyntheticOptions(width=W, height=H, n=cfg.n)
    try:
        run_build(root, plan_synthetic(opts, ev.unseen_rooms, ev.seed, splits=(0.0, 0.0, 1.0)),
                  workers=_render_workers(), progress=progress, reuse=True)
    except DatasetError as err:
        raise WfbError(f"{root}: {err}; remove the folder to render the unseen rooms again") from None
    scores = evaluate([("model", str(run_dir)), ("shipped", str(shipped_model()))], root, "test",
                      resolve_device(device, "device"), ev.batch_size, progress=False, refine=refiner(ev.refine))
    report = {"data": str(root), "samples": scores["num_samples"], "seed": ev.seed, "models": scores["models"],
              "references": scores["references"], "median_train_depth_m": scores["median_train_depth_m"],
              "verdict": compare_models(scores["models"]["model"], scores["models"]["shipped"])}
    if progress:
        print(format_unseen(report), file=sys.stderr)
    return report


def evaluate_rooms(run_dir: Path, ev: EvaluateConfig, device: str, progress: bool = True) -> dict:
    """The trained model (``run_dir``) and the shipped one scored on the test split of each dataset of
    ``ev.rooms``, with :func:`compare_models`' verdict: ``{folder: report}``."""
    out = {}
    for root in ev.rooms:
        scores = evaluate([("model", str(run_dir)), ("shipped", str(shipped_model()))], Path(str(root)), "test",
                          resolve_device(device, "device"), ev.batch_size, progress=False,
                          refine=refiner(ev.refine))
        out[str(root)] = {"data": str(root), "samples": scores["num_samples"], "models": scores["models"],
                          "references": scores["references"], "median_train_depth_m": scores["median_train_depth_m"],
                          "verdict": compare_models(scores["models"]["model"], scores["models"]["shipped"])}
        if progress:
            print(format_verdict(f"{root} ({scores['num_samples']} samples)", out[str(root)]["verdict"]), file=sys.stderr)
    return out


def evaluate_videos(run_dir: Path, ev: EvaluateConfig, device: str, progress: bool = True) -> dict:
    """The trained model (``run_dir``) and the shipped one on the blurred windows of each video of ``ev.videos``
    (:func:`~worldfromblur.evaluation.video.evaluate_video`, with ``ev.refine`` refinement iterations), with
    :func:`~worldfromblur.evaluation.video.compare_video`'s verdict: ``{folder: report}``."""
    out = {}
    models = {"model": load_model(run_dir)[0], "shipped": load_model(shipped_model())[0]}
    for folder in ev.videos:
        report = evaluate_video(Path(str(folder)), models, str(resolve_device(device, "device")), ev.refine, progress)
        report["verdict"] = compare_video(report["models"]["model"], report["models"]["shipped"],
                                          refined=ev.refine > 0)
        out[str(folder)] = report
        if progress:
            print(format_verdict(_video_title(folder, report), report["verdict"]), file=sys.stderr)
    return out


def _video_title(folder, report: dict) -> str:
    n = report["models"]["model"]["judged_windows"]
    return f"{folder} ({len(report['windows'])} blurred windows of real video, {n} judged)"


def ship_verdict(report: dict) -> dict:
    """Whether a run's model should replace the shipped one: it beats it on the unseen procedural rooms (or, without
    them, on some held-out room or video) and is worse on none of the held-out rooms and videos; with the reason in
    words."""
    rooms = {k: v["verdict"] for k, v in report.get("rooms", {}).items()}
    rooms |= {k: v["verdict"] for k, v in report.get("videos", {}).items()}
    worse = [f"{k} ({', '.join(v['worse'])})" for k, v in rooms.items() if v["worse"]]
    if "unseen_rooms" in report:
        lead = report["unseen_rooms"]["verdict"]
        beats, where = lead["beats_shipped"], "the unseen procedural rooms"
    else:
        beats, where = any(v["beats_shipped"] for v in rooms.values()), "any held-out room or video"
    if not beats:
        return {"ship": False, "why": f"it does not beat the shipped model on {where}"}
    if worse:
        return {"ship": False, "why": f"it beats the shipped model on {where} but is worse on {'; '.join(worse)}"}
    return {"ship": True, "why": f"it beats the shipped model on {where} and is worse on no held-out room or video"}


COMPARED = (("deblurring PSNR dB", ("image", "psnr"), 1, 0.05), ("depth Abs Rel", ("depth", "abs_rel"), -1, 0.02),
            ("rotation error up to reversal deg", ("motion_up_to_reversal", "rotation"), -1, 0.02))
"""What :func:`compare_models` compares: (name, where in a model's scores, +1 higher is better / -1 lower,
tolerance: dB for PSNR, a relative share for the others)."""
REFINED_ROTATION = "rotation error up to reversal deg, after refinement"


def compare_models(new: dict, old: dict) -> dict:
    """Whether ``new`` beats ``old`` on the same data: better on at least one of deblurring PSNR, depth Abs Rel and the
    mean rotation error up to reversal (yaw, pitch, roll), and worse on none beyond a small tolerance (0.05 dB; 2 %).

    When both were also scored after test-time refinement (``refined``, :func:`score_models`), rotation is judged
    after it, as ``wfb reconstruct`` delivers it by default; the network's own rotation is then reported in
    ``terms`` but decides nothing (its depth map alone moves it by a few per cent in a room)."""
    def value(scores: dict, where: tuple[str, str]) -> float:
        if where[1] == "rotation":
            m = scores[where[0]]["motion_up_to_reversal"] if where[0] == "refined" else scores[where[0]]
            return (m["yaw"] + m["pitch"] + m["roll"]) / 3
        return scores[where[0]][where[1]]

    refined = "refined" in new and "refined" in old
    better, worse, terms = [], [], {}
    for name, where, sign, tol in COMPARED + ((REFINED_ROTATION, ("refined", "rotation"), -1, 0.02),) * refined:
        a, b = value(new, where), value(old, where)
        judged = not (refined and where == ("motion_up_to_reversal", "rotation"))
        terms[name] = {"model": a, "shipped": b} | ({} if judged else {"judged": False})
        margin = tol if where[1] == "psnr" else tol * abs(b)
        if judged and sign * (a - b) > 0:
            better.append(name)
        if judged and sign * (b - a) > margin:
            worse.append(name)
    return {"terms": terms, "better": better, "worse": worse, "beats_shipped": bool(better) and not worse}


def format_unseen(unseen: dict) -> str:
    return format_verdict(f"unseen procedural rooms ({unseen['samples']} samples no pool contains)", unseen["verdict"])


def format_verdict(title: str, verdict: dict) -> str:
    """A :func:`compare_models` verdict in a few lines under ``title``."""
    lines = [f"{title}: model / shipped"]
    lines += [f"  {name}: {t['model']:.3f} / {t['shipped']:.3f}" + ("  (reported, not judged)" if
              t.get("judged", True) is False else "") for name, t in verdict["terms"].items()]
    lines.append("  the model beats the shipped one" if verdict["beats_shipped"] else
                 f"  the model does not beat the shipped one (worse: {', '.join(verdict['worse']) or 'none'}; "
                 f"better: {', '.join(verdict['better']) or 'none'})")
    return "\n".join(lines)


@torch.no_grad()
def evaluate_photos(run_dir: Path, cfg: TrainConfig, ev: EvaluateConfig, device: torch.device) -> dict:
    """Deblurring PSNR of the trained model on blurred crops of the held-out photos (and the share of pool samples
    the source mixes in), beside the blurred input's."""
    model, _ = load_model(run_dir)
    model.to(device).eval()
    source = open_photos(cfg, device, progress=False, held_out=True, seed=ev.seed)
    steps = -(-ev.samples // ev.batch_size)
    out, ref = [], []
    for s in range(steps):
        batch = source.batch(s, ev.batch_size)
        out.append(psnr(model.deblur(batch["blurred"]).clamp(0, 1), batch["sharp"]))
        ref.append(psnr(batch["blurred"], batch["sharp"]))
    return {"data": "held-out photos", "held_out_photos": len(source.photos.photos), "samples": steps * ev.batch_size,
            "seed": ev.seed, "models": {"model": {"image": {"psnr": sum(out) / steps}}},
            "references": {"blurred input": {"image": {"psnr": sum(ref) / steps}}}}


def format_evaluation(report: dict) -> str:
    """The evaluations of a run in a few lines: on its held-out data, and on unseen rooms beside the shipped model."""
    parts = [_format_held_out(report)] if "models" in report else []
    if "unseen_rooms" in report:
        parts.append(format_unseen(report["unseen_rooms"]))
    for root, room in report.get("rooms", {}).items():
        parts.append(format_verdict(f"{root} ({room['samples']} samples)", room["verdict"]))
    for folder, video in report.get("videos", {}).items():
        parts.append(format_verdict(_video_title(folder, video), video["verdict"]))
    if "ship" in report:
        parts.append(("ship it: " if report["ship"]["ship"] else "do not ship it: ") + report["ship"]["why"])
    return "\n".join(parts)


def _format_held_out(report: dict) -> str:
    m, r = report["models"]["model"], report["references"]
    if "held_out_photos" in report:
        return (f"evaluation: {report['samples']} blurred crops of {report['held_out_photos']} held-out photos\n"
                f"  deblurring PSNR {m['image']['psnr']:.2f} dB (blurred input {r['blurred input']['image']['psnr']:.2f} dB)")
    where = (f"{report['samples']} stream samples from {report['held_out_frames']} held-out frames"
             if "held_out_frames" in report else f"{report['samples']} samples of {report['data']}")
    rot, trans = ("pitch", "yaw", "roll"), ("tx", "ty", "tz")
    mo, zero = m["motion_up_to_reversal"], r["zero motion"]["motion"]
    lines = [f"evaluation: {where}",
             f"  deblurring PSNR {m['image']['psnr']:.2f} dB (blurred input {r['blurred input']['image']['psnr']:.2f} dB)",
             f"  depth Abs Rel {m['depth']['abs_rel']:.3f}, RMSE {m['depth']['rmse']:.3f} m "
             f"(median training depth {report['median_depth_m']:.2f} m: {r['median depth']['depth']['abs_rel']:.3f}, "
             f"{r['median depth']['depth']['rmse']:.3f} m)",
             "  rotation error up to reversal, pitch/yaw/roll: " + "/".join(f"{mo[k]:.3f}" for k in rot)
             + " deg (zero motion: " + "/".join(f"{zero[k]:.3f}" for k in rot) + ")",
             "  translation error up to reversal, x/y/z: " + "/".join(f"{mo[k]:.2f}" for k in trans)
             + " cm (zero motion: " + "/".join(f"{zero[k]:.2f}" for k in trans) + ")"]
    return "\n".join(lines)
