"""``wfb train-model``: every stage of a recipe in one time budget, then evaluation and export.

A recipe is YAML with three parts::

    base:      a training config (any key of TrainConfig) shared by every stage
    stages:    a list of {name, share, config}: each stage's own keys, and its share of the training time
    evaluate:  {samples: N, seed: S}, the held-out evaluation

The shipped recipes live in ``worldfromblur/recipes`` (``wfb train-model compact`` finds one by name). Command-line
``key=value`` overrides apply to ``base`` (``evaluate.samples=N`` to the evaluation). The run folder holds::

    OUT/recipe.yaml     the resolved recipe and budget (a resume reads this one, not the command line's)
    OUT/stages/NAME/    each stage's run: config, checkpoints, TensorBoard logs
    OUT/eval.json       the held-out evaluation (also printed as a table)
    OUT/model/          the exported model (model.safetensors + config.yaml): ``--checkpoint OUT`` reads it

Budget. Each stage gets its share of the minutes left when it starts (after the pool is built and earlier stages
ran), less a reserve for evaluation and export; inside a stage the trainer times its first steps and sets max_steps
to fit (:class:`worldfromblur.training.trainer.Budget`). Later stages start from the previous stage's weights.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..errors import WfbError
from .config import apply_override, config_from_dict, read_yaml, shipped_names

EVAL_RESERVE_S = 30.0


def shipped_recipes() -> list[str]:
    return shipped_names("worldfromblur.recipes")


def read_recipe(path_or_name: str, overrides: list[str] = ()) -> dict:
    """The recipe dict, with ``overrides`` applied to its base and every stage's config checked."""
    recipe, where = read_yaml(path_or_name, "worldfromblur.recipes", "recipe")
    if not isinstance(recipe, dict):
        raise WfbError(f"{where}: a recipe must be a mapping with base, stages and evaluate")
    unknown = sorted(set(recipe) - {"base", "stages", "evaluate"})
    if unknown or not isinstance(recipe.get("stages"), list) or not recipe["stages"]:
        raise WfbError(f"{where}: a recipe has base, stages (a non-empty list) and evaluate; "
                       f"{'unknown key(s) ' + ', '.join(unknown) if unknown else 'stages is missing or empty'}")
    recipe.setdefault("base", {})
    recipe.setdefault("evaluate", {})
    for o in overrides:  # evaluate.KEY=VALUE sets the evaluation; anything else the base config
        if o.startswith("evaluate."):
            apply_override(recipe, o)
        else:
            apply_override(recipe["base"], o)
    unknown = sorted(set(recipe["evaluate"]) - {"samples", "seed"})
    if unknown:
        raise WfbError(f"{where}: evaluate has unknown key(s) {', '.join(unknown)}; known: samples, seed")
    names = set()
    for i, st in enumerate(recipe["stages"]):
        if not isinstance(st, dict) or "name" not in st or float(st.get("share", 0)) <= 0:
            raise WfbError(f"{where}: stage {i + 1} needs a name and a positive share")
        if st["name"] in names:
            raise WfbError(f"{where}: two stages are named {st['name']!r}")
        names.add(st["name"])
        stage_config(recipe, st, Path("."), 1.0)  # every stage's config is checked before anything runs
    return recipe


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def stage_config(recipe: dict, stage: dict, out: Path, minutes: float, init: Path | None = None):
    data = _merge(recipe["base"], stage.get("config", {}))
    data["out"] = str(out / "stages" / stage["name"])
    data["minutes"] = minutes
    if init is not None:
        data["init"] = {m: str(init) for m in ("deblur", "depth", "motion")}
    return config_from_dict(data, f"recipe stage {stage['name']}")


def train_model(recipe_name: str, out: str | Path, minutes: float, overrides: list[str] = (), resume: bool = False,
                progress: bool = True) -> dict:
    """Train every stage of a recipe within ``minutes``, evaluate on the held-out frames, export ``OUT/model``."""
    from ..checkpoint import checkpoint_dirs
    from .trainer import train

    t_start = time.perf_counter()
    out = Path(out)
    if minutes <= 0:
        raise WfbError(f"--minutes must be positive, got {minutes}")
    saved = out / "recipe.yaml"
    if resume:
        if not saved.is_file():
            raise WfbError(f"{out}: nothing to resume (no recipe.yaml); start it without --resume")
        state = yaml.safe_load(saved.read_text())
        recipe, minutes = state["recipe"], float(state["minutes"])
    else:
        if out.exists() and any(out.iterdir()):
            raise WfbError(f"{out}: already exists and is not empty; pass --resume to continue it, or choose a new --out")
        recipe = read_recipe(recipe_name, overrides)
        _check_budget(recipe, minutes)
        _check_pools(recipe)
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(yaml.safe_dump({"recipe": recipe, "minutes": minutes, "source": str(recipe_name),
                                         "overrides": list(overrides)}, sort_keys=False))
    stages = recipe["stages"]
    prev = None
    for i, st in enumerate(stages):
        run_dir = out / "stages" / st["name"]
        done = checkpoint_dirs(run_dir)
        left_s = minutes * 60 - (time.perf_counter() - t_start) - EVAL_RESERVE_S
        share = float(st["share"]) / sum(float(s["share"]) for s in stages[i:])
        stage_minutes = max(left_s * share / 60, 0.05)
        cfg = stage_config(recipe, st, out, stage_minutes, prev)
        if progress:
            print(f"stage {st['name']} ({cfg.stage}): {stage_minutes:.1f} min", file=sys.stderr)
        train(cfg, resume=bool(done), progress=progress)
        prev = run_dir
    report = evaluate_held_out(prev, recipe, progress)
    report["minutes_used"] = (time.perf_counter() - t_start) / 60
    (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a resumed run re-exports its final weights
    from ..models.io import export_model

    export_model(prev, model_dir, provenance={
        "recipe": yaml.safe_load(saved.read_text()), "device": _device_name(),
        "samples_seen": _samples_seen(out, stages), "held_out": report["metrics"]})
    return report


def _check_budget(recipe: dict, minutes: float) -> None:
    if minutes * 60 < EVAL_RESERVE_S + 6 * len(recipe["stages"]):
        raise WfbError(f"--minutes {minutes} is too short for {len(recipe['stages'])} stage(s) and the evaluation; "
                       f"give at least {(EVAL_RESERVE_S + 6 * len(recipe['stages'])) / 60:.1f}")


def _check_pools(recipe: dict) -> None:
    """Every pool folder a stage names is a readable pool, and some frames are held out, before anything is
    written."""
    from ..data.format import DatasetError
    from ..data.pool import read_pool_meta
    from .trainer import pool_entries

    for st in recipe["stages"]:
        cfg = stage_config(recipe, st, Path("."), 1.0)
        if cfg.data.source != "stream":
            continue
        if cfg.data.held_out <= 0:
            raise WfbError("data.held_out must be above 0: train-model evaluates on held-out frames (e.g. 0.05)")
        for entry, _, num in pool_entries(cfg.data.pool):
            if num is None:
                try:
                    read_pool_meta(entry)
                except DatasetError as err:
                    raise WfbError(f"data.pool: {err}") from None


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"


def _samples_seen(out: Path, stages: list) -> dict:
    seen = {}
    for st in stages:
        cfg = yaml.safe_load((out / "stages" / st["name"] / "config.yaml").read_text())
        seen[st["name"]] = int(cfg["max_steps"]) * int(cfg["batch_size"])
    return seen


def evaluate_held_out(run_dir: Path, recipe: dict, progress: bool = True) -> dict:
    """The trained model on stream samples made from the pool's held-out frames (a seed no training step used)."""
    from ..data.stream import BlurStream
    from ..evaluation.metrics import depth_metrics, image_metrics, motion_errors
    from ..models.io import load_model
    from .config import config_from_dict
    from .trainer import build_pool, stream_options

    cfg = config_from_dict(_merge(recipe["base"], recipe["stages"][-1].get("config", {})), "recipe")
    ev = {"samples": 128, "seed": 1_000_003, **recipe.get("evaluate", {})}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, held = build_pool(cfg.data.pool, cfg.seed, cfg.data.held_out, progress=False, textures=cfg.data.textures,
                         held_out_only=True)
    if held is None:
        raise WfbError("data.held_out leaves no frames to evaluate on; set it above 0 (e.g. 0.05)")
    stream = BlurStream(held, stream_options(cfg), ev["seed"], device)
    model, _ = load_model(run_dir)
    model.to(device)
    rows: dict[str, list] = {k: [] for k in ("blurred", "deblurred", "depth", "median", "motion", "zero")}
    batch_size = 8
    for step in range(int(np.ceil(ev["samples"] / batch_size))):
        b = stream.batch(step, batch_size)
        with torch.no_grad():
            o = model(b["blurred"], b["K"])
        rows["blurred"].append(image_metrics(b["blurred"], b["sharp"]))
        rows["deblurred"].append(image_metrics(o["deblurred"], b["sharp"]))
        rows["depth"].append(depth_metrics(o["depth"], b["depth"], b["valid_depth"]))
        median = float(b["depth"][b["valid_depth"]].median())
        rows["median"].append(depth_metrics(torch.full_like(b["depth"], median), b["depth"], b["valid_depth"]))
        rows["motion"].append(motion_errors(o["poses"], b["poses"], reversal="min"))
        rows["zero"].append(motion_errors(torch.eye(4, device=device).expand_as(b["poses"]), b["poses"], reversal="min"))
    metrics = {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}
    report = {"held_out_frames": len(held), "samples": len(rows["blurred"]) * batch_size, "seed": ev["seed"],
              "metrics": metrics}
    if progress:
        print(format_held_out(report), file=sys.stderr)
    return report


def format_held_out(report: dict) -> str:
    m = report["metrics"]
    lines = [f"held-out evaluation: {report['samples']} stream samples from {report['held_out_frames']} frames",
             f"  deblurring PSNR {m['deblurred']['psnr']:.2f} dB (blurred input {m['blurred']['psnr']:.2f} dB)",
             f"  depth Abs Rel {m['depth']['abs_rel']:.3f}, RMSE {m['depth']['rmse']:.3f} m "
             f"(median depth: {m['median']['abs_rel']:.3f}, {m['median']['rmse']:.3f} m)",
             "  rotation error up to reversal, pitch/yaw/roll: " + "/".join(f"{m['motion'][k]:.3f}" for k in ("pitch", "yaw", "roll"))
             + " deg (zero motion: " + "/".join(f"{m['zero'][k]:.3f}" for k in ("pitch", "yaw", "roll")) + ")",
             "  translation error up to reversal, x/y/z: " + "/".join(f"{m['motion'][k]:.2f}" for k in ("tx", "ty", "tz"))
             + " cm (zero motion: " + "/".join(f"{m['zero'][k]:.2f}" for k in ("tx", "ty", "tz")) + ")"]
    return "\n".join(lines)
