"""Deblurring on real camera blur, model beside model: PSNR and SSIM of the blurred input and of each model's
full-resolution deblurred frame (what ``wfb reconstruct`` returns), on real blurred/sharp pairs.

    python -m benchmarks.real_deblur FRAMES_DIR [--pairs DIR] [--models shipped NAME=CHECKPOINT ...]
                                     [--precision fp32 bf16] [--every 20] [--lengths 9 11 13]

FRAMES_DIR holds consecutive frames of high-frame-rate video (e.g. the 240 fps GoPro sequence of
``jeffreywolberg/deblurring_dataset_generator``, ``data/level3/videos/GOPR0477_11_00``): every ``--every`` frames,
the N frames around a centre frame are averaged in linear light into a blurred image and the centre frame is the
truth (:mod:`benchmarks.video`). ``--pairs DIR`` adds ready-made pairs, ``NAME.png`` blurred beside ``NAME_gt.png``
sharp (that repository's ``data/level3/saved_images``). Each model (``shipped``, or ``NAME=PATH`` of a checkpoint, run
folder or exported model) deblurs every blurred image at its own resolution by the multi-scale fusion of
:func:`worldfromblur.reconstruct.fullres.deblur_full`; the table gives the mean PSNR and SSIM, the gain over the
blurred input, how many images improved, the edge energy against the truth's
(:func:`worldfromblur.evaluation.edge_energies`: 1 is as much fine detail as the sharp frame, below 1 softer), and
seconds per megapixel, in each ``--precision`` (the number format of the
network, as ``wfb reconstruct --precision``; default fp32). No training set of the package contains these frames.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import machine, table
from benchmarks.video import read, video_arguments, video_frames, windows
from worldfromblur.evaluation.metrics import edge_energies, image_metrics
from worldfromblur.imaging import blur_frames
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.fullres import deblur_full
from worldfromblur.reconstruct.pipeline import PRECISIONS, Reconstructor, working_size


def pairs(args) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(label, blurred, sharp) of every video window and ready-made pair."""
    out = []
    frames = video_frames(args)
    for c, n in windows(frames, args.every, args.lengths):
        stack = torch.stack([read(p) for p in frames[c - n // 2:c + n // 2 + 1]])
        out.append(("video", blur_frames(stack, 0)[None], stack[n // 2][None]))
    if args.pairs is not None:
        for gt in sorted(args.pairs.glob("*_gt.png")):
            blurred = gt.with_name(gt.name.replace("_gt.png", ".png"))
            if blurred.is_file():
                out.append(("pairs", read(blurred)[None], read(gt)[None]))
    return out


def models(specs: list[str]) -> list[tuple[str, object]]:
    out = []
    for spec in specs:
        name, _, path = spec.partition("=")
        model = load_model(shipped_model() if spec == "shipped" else Path(path or name))[0].eval()
        out.append((name, model))
    return out


def scored(image: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM and edge energy of one image against its sharp truth."""
    return {**image_metrics(image, sharp), "edges": edge_energies(image, sharp)[0]}


@torch.no_grad()
def main() -> None:
    ap = video_arguments(__doc__)
    ap.add_argument("--pairs", type=Path, default=None, help="folder of NAME.png / NAME_gt.png real pairs")
    ap.add_argument("--models", nargs="+", default=["shipped"], help="shipped or NAME=PATH (default: shipped)")
    ap.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"],
                    help="number formats of the network, one row each (default fp32)")
    args = ap.parse_args()
    data = pairs(args)
    scores: dict[tuple[str, str], list[dict]] = {}
    seconds: dict[str, float] = {}
    for source, blurred, sharp in data:
        scores.setdefault((source, "blurred input"), []).append(scored(blurred, sharp))
    for (label, model), precision in itertools.product(models(args.models), args.precision):
        engine = Reconstructor(model, "cpu", precision=precision)
        name = label if args.precision == ["fp32"] else f"{label} {engine.precision}"
        seconds[name] = 0.0
        for source, blurred, sharp in data:
            H, W = blurred.shape[-2:]
            work = working_size(W, H, model.cfg.input_size)
            t = time.perf_counter()
            out, _ = deblur_full(engine.deblur, blurred, work[0] * work[1])
            seconds[name] += (time.perf_counter() - t) / (H * W / 1e6)
            scores.setdefault((source, name), []).append(scored(out.clamp(0, 1), sharp))
    rows = []
    for (source, name), v in scores.items():
        base = scores[(source, "blurred input")]
        p = statistics.mean(m["psnr"] for m in v)
        gain = p - statistics.mean(m["psnr"] for m in base)
        better = sum(a["psnr"] > b["psnr"] for a, b in zip(v, base))
        per_mp = f"{seconds[name] / len(data):.2f}" if name in seconds else "-"
        rows.append([source, name, len(v), f"{p:.2f}", f"{statistics.mean(m['ssim'] for m in v):.4f}",
                     f"{gain:+.2f}", f"{better}/{len(v)}", f"{statistics.mean(m['edges'] for m in v):.3f}", per_mp])
    sizes = sorted({f"{b.shape[-1]}x{b.shape[-2]}" for _, b, _ in data})
    print(f"real blur: {args.frames} (every {args.every}, lengths {args.lengths})"
          + (f" and pairs of {args.pairs}" if args.pairs else "") + f"; images {', '.join(sizes)}; {machine()}\n")
    print(table(["data", "method", "images", "PSNR dB", "SSIM", "vs blurred", "improved", "edge energy", "s / MP"],
                rows))


if __name__ == "__main__":
    main()
