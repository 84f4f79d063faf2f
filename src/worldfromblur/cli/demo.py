"""``wfb demo``: build a small synthetic dataset and write a preview a person can open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import WfbError
from .arguments import default_workers


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build a small synthetic blur dataset and write preview.png",
        description="Render a few blurred samples with the synthetic engine and write OUT/preview.png: the blurred "
        "photo, the sharp reference frame with each pixel's path during the exposure, and the metric depth.",
    )
    p.add_argument("--out", type=Path, default=Path("wfb-demo"), help="output folder (default: wfb-demo)")
    p.add_argument("--num", type=int, default=8, help="samples to render (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--rows", type=int, default=4, help="samples shown in the preview (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: all cores)")
    p.set_defaults(func=run)


def preview(root: Path, rows: int) -> np.ndarray:
    """Panel rows of (blurred, sharp with motion paths, depth) for the first samples of a dataset."""
    from ..data import BlurDataset
    from ..viz import colorize_depth, draw_paths, labelled_row, pixel_paths, stack_rows

    ds = BlurDataset(root, split="all")
    out = []
    for i in range(min(rows, len(ds))):
        rec = ds.record(i)
        stats = rec.meta.get("stats", {})
        paths = pixel_paths(rec.depth, rec.poses, rec.K)
        out.append(
            labelled_row(
                [rec.blurred, draw_paths(rec.sharp, paths), colorize_depth(rec.depth)],
                [
                    f"blurred ({rec.meta.get('subframes', 1)} instants/frame)",
                    f"sharp + motion: {stats.get('rotation_deg_per_frame', 0):.2f} deg, "
                    f"{stats.get('translation_cm_per_frame', 0):.2f} cm /frame",
                    f"depth {rec.depth[rec.depth > 0].min():.2f}-{rec.depth.max():.2f} m",
                ],
            )
        )
    return stack_rows(out)


def run(args) -> int:
    from ..data.build import format_summary, run_build
    from ..data.synthetic import SyntheticOptions, plan_synthetic

    out: Path = args.out
    if args.num < 1 or args.rows < 1:
        raise WfbError("--num and --rows must be at least 1")
    if out.exists() and any(out.iterdir()):
        if not (out / "preview.png").exists() or not (out / "dataset").is_dir():
            raise WfbError(f"{out}: exists and is not a wfb demo folder; choose a new --out")
        if not args.overwrite:
            raise WfbError(f"{out}: already holds a demo; pass --overwrite to replace it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    manifest = run_build(out / "dataset", plan_synthetic(SyntheticOptions(), args.num, args.seed), args.workers,
                         overwrite=args.overwrite)
    print(format_summary(manifest, ("blur_px_median", "rotation_deg_per_frame", "translation_cm_per_frame")))
    tmp = out / "preview.png.tmp"
    Image.fromarray(preview(out / "dataset", args.rows)).save(tmp, format="PNG")
    tmp.replace(out / "preview.png")
    print(f"wrote {out / 'preview.png'} and the dataset in {out / 'dataset'}")
    return 0
