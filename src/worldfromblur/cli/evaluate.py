"""``wfb evaluate``: the paper's Tables 1-3 (and 4-6 with Eigen's depth) for one or more checkpoints."""

from __future__ import annotations

from pathlib import Path

from ..devices import resolve_device
from ..errors import WfbError


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score checkpoints on a dataset split and write the paper's tables",
        description="Run each model's cycle on a dataset split and write REPORT/metrics.json and REPORT/tables.md "
        "with one column per checkpoint, next to reference columns (blurred input, zero motion, median depth).",
    )
    p.add_argument("--checkpoint", action="append", required=True, metavar="[LABEL=]CKPT",
                   help="checkpoint or run folder, or deblur:RUN,depth:RUN,motion:RUN to join stage-1 runs; repeat for "
                   "more columns (e.g. --checkpoint pre=deblur:runs/a,depth:runs/b,motion:runs/c --checkpoint cycle=runs/d)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder made by wfb make-dataset")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--out", type=Path, required=True, help="report folder (must not hold a report already)")
    p.add_argument("--figures", type=int, default=0, help="write a Fig. 7-style panel for the first N samples per model")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu or cuda (default auto)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="also score each model's trajectory after wfb reconstruct's test-time refinement (STEPS "
                   "Gauss-Newton iterations, e.g. 15, its default; from the network's deblurred frame, as for a photo at "
                   "the model's size): a '+ refinement' column in Table 1 (default 0: not scored)")
    p.add_argument("--refine-roll-prior", type=float, default=None, metavar="W",
                   help="with --refine, the weight of the refinement's roll prior (default: wfb reconstruct's, 0.06; "
                   "0: none)")
    p.add_argument("--deconvolve", type=float, nargs="?", const=True, default=False, metavar="LAMBDA",
                   help="with --refine, also score the sharp frame wfb reconstruct --deconvolve makes from the network's "
                   "frame and the refined trajectory (LAMBDA: how strongly it stays near the network's frame, default "
                   "0.3): a '+ refinement + deconvolution' column in Tables 2 and 2b")
    p.add_argument("--reference-depth", type=float, default=None, metavar="METRES",
                   help="the constant of the median-depth reference column (default: the median depth of the data's "
                   "training split, or of all its samples when it has none, which then knows the scenes' scale; give "
                   "e.g. a model's training median to compare with a constant that knows nothing of these scenes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_specs(values: list[str]) -> list[tuple[str, str]]:
    specs = []
    for v in values:
        label, _, path = v.rpartition("=") if "=" in v else ("", "", v)
        label = label or Path(path.split(",")[0].split(":")[-1]).name or f"model{len(specs) + 1}"
        if any(label == s[0] for s in specs):
            raise WfbError(f"two checkpoints share the label {label!r}; name them as LABEL=CKPT")
        specs.append((label, path))
    return specs


def run(args) -> int:
    from ..evaluation.report import (
        deconvolver,
        evaluate,
        refiner,
        tables_markdown,
        write_report,
    )
    from ..reconstruct.deconvolve import DEFAULT_WEIGHT

    # --deconvolve: absent False, bare True (the default lambda), or a lambda; the default is read here, not at
    # start-up, so that registering the command imports nothing heavy
    lam = DEFAULT_WEIGHT if args.deconvolve is True else (None if args.deconvolve is False else args.deconvolve)

    if (args.out / "metrics.json").exists() and not args.overwrite:
        raise WfbError(f"{args.out}: already holds a report; pass --overwrite or choose another --out")
    if args.refine < 0:
        raise WfbError(f"--refine must be 0 (off) or a number of iterations, got {args.refine}")
    if args.refine_roll_prior is not None and not (args.refine_roll_prior >= 0 and args.refine > 0):
        raise WfbError(f"--refine-roll-prior must be 0 (none) or more and needs --refine, got {args.refine_roll_prior}"
                       f" with --refine {args.refine}")
    if lam is not None and args.refine == 0:
        raise WfbError("--deconvolve scores the frame deconvolved with the refined trajectory: give --refine too "
                       "(e.g. --refine 15)")
    if lam is not None and not lam > 0:
        raise WfbError(f"--deconvolve LAMBDA must be above 0 (e.g. {DEFAULT_WEIGHT:g}), got {lam:g}")
    if args.reference_depth is not None and not args.reference_depth > 0:
        raise WfbError(f"--reference-depth is a depth in metres above 0 (e.g. 1.79), got {args.reference_depth:g}")
    device = resolve_device(args.device)
    report = evaluate(parse_specs(args.checkpoint), args.data, args.split, device, args.batch_size,
                      args.figures, args.out, progress=not args.quiet,
                      refine=refiner(args.refine, args.refine_roll_prior),
                      deconvolve=None if lam is None else deconvolver(lam), reference_depth=args.reference_depth)
    write_report(report, args.out)
    print(tables_markdown(report))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'tables.md'}")
    return 0

