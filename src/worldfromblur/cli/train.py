"""``wfb train``: train a stage from a config file, with command-line overrides."""

from __future__ import annotations

from pathlib import Path

from ..errors import WfbError


def register(sub) -> None:
    from ..shipped import CONFIGS, shipped_names

    p = sub.add_parser(
        "train",
        help="train a module (stage 1) or the cycle (stage 2) from a config",
        description="Train from a YAML config, a file or a shipped name ("
        + ", ".join(shipped_names(CONFIGS))
        + "). Any value can be overridden as key=value or section.key=value, e.g. data.root=DIR optim.lr=1e-4. "
        "The resolved config, checkpoints and TensorBoard logs go to the config's out folder; after training the model "
        "is evaluated (the held-out frames of a stream, a dataset's val split) into OUT/eval.json and exported to "
        "OUT/model. Several GPUs or nodes: run the same command under torchrun.",
    )
    p.add_argument("config", help="config file or shipped config name")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's out folder from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import checkpoint_dirs
    from ..training import load_config, one_stage, run_recipe
    from ..training.recipe import format_evaluation

    cfg = load_config(args.config, args.overrides)
    if cfg.max_steps < 1:
        raise WfbError("max_steps must be at least 1")
    report = run_recipe(one_stage(cfg), cfg.out, resume=args.resume, progress=not args.quiet)
    run_dir = Path(cfg.out)
    ckpts = checkpoint_dirs(run_dir)
    if report is not None:
        print(format_evaluation(report))
    print(f"trained {cfg.stage} to step {cfg.max_steps}; checkpoint {ckpts[-1] if ckpts else '(none)'}; "
          f"model: {run_dir / 'model'}; logs: tensorboard --logdir {run_dir / 'tb'}")
    return 0
