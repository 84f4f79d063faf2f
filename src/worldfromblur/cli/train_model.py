"""``wfb train-model``: train every stage of a recipe in a time budget, evaluate, and export a model folder."""

from __future__ import annotations

from ..errors import WfbError


def register(sub) -> None:
    from ..shipped import RECIPES, shipped_names

    p = sub.add_parser(
        "train-model",
        help="train a whole model (every stage of a recipe) in a time budget",
        description="Train every stage of a recipe (a file or a shipped name: " + ", ".join(shipped_names(RECIPES))
        + "; default compact) within --minutes on the best device present (CUDA with bf16, else the CPU), evaluate "
        "on held-out frames of the pool, and export OUT/model, which `wfb reconstruct --checkpoint OUT` and "
        "`wfb evaluate --checkpoint OUT` read. key=value overrides apply to the recipe's base config, e.g. "
        "batch_size=32 data.pool='[synthetic:2000,pools/7scenes]'.",
    )
    p.add_argument("recipe", nargs="?", default="compact", help="recipe file or shipped recipe name (default compact)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe's base config")
    p.add_argument("--out", required=True, help="run folder (new, or an interrupted run with --resume)")
    p.add_argument("--minutes", type=float, help="time budget for training, evaluation and export (required to train)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--reevaluate", action="store_true",
                   help="do not train: evaluate the finished run in --out again and give a new ship verdict (after "
                   "the evaluation changed; overrides may set evaluate.KEY=VALUE); the former eval.json is kept as "
                   "eval-N.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.recipe import format_evaluation, reevaluate, train_model

    if "=" in args.recipe:  # `wfb train-model key=value ...`: no recipe named, the first override taken for one
        args.overrides.insert(0, args.recipe)
        args.recipe = "compact"
    if args.reevaluate:
        if args.resume or args.minutes is not None:
            raise WfbError("--reevaluate trains nothing: drop --resume and --minutes")
        report = reevaluate(args.out, args.overrides, not args.quiet)
    else:
        if args.minutes is None:
            raise WfbError("--minutes is required to train (or pass --reevaluate to evaluate a finished run again)")
        if args.minutes <= 0:
            raise WfbError(f"--minutes must be positive, got {args.minutes}")
        report = train_model(args.recipe, args.out, args.minutes, args.overrides, args.resume, not args.quiet)
    if report is not None:
        print(format_evaluation(report))
        print(f"{report['minutes_used']:.1f} min used")
    print(f"model: {args.out}/model (wfb reconstruct PHOTO --checkpoint {args.out})")
    return 0
