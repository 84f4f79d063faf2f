"""Full-resolution deblurring on real camera motion: blur made from consecutive sharp frames of high-frame-rate video.

    python -m experiments.fullres_deblur FRAMES_DIR [--checkpoint DIR] [--every 20] [--lengths 9 11 13]

FRAMES_DIR holds consecutive video frames (PNG or JPEG, sorted by name), for example a 240 fps GoPro sequence
(docs/reconstruct.md says where to get one). Every ``--every`` frames, the ``N`` frames around a centre frame
(N cycling through ``--lengths``) are averaged in linear light into one blurred image, as a 30 fps camera's
exposure would integrate them; the centre frame is the sharp truth. Each method's output is compared with it
(PSNR, dB, at the frames' own resolution):

* blurred: the input itself;
* working size, upsampled: the model's output at its working size, bilinearly upsampled (what ``wfb reconstruct``
  returned before outputs came back at the photo's size);
* working size, residual: the input plus the upsampled working-size correction;
* one pass at full size: the network run once on the full-resolution image (in tiles);
* ``1/s``: the input plus the upsampled correction of the network run at 1/s of the size;
* fusion (what ``wfb reconstruct`` does): the average of the corrections of the scales that
  :func:`worldfromblur.reconstruct.fullres.fusion_scales` picks.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from benchmarks.common import machine, table
from benchmarks.video import read, video_arguments, video_frames, windows
from worldfromblur.evaluation.metrics import psnr
from worldfromblur.imaging import blur_frames
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct.fullres import deblur_full, resize, tiled
from worldfromblur.reconstruct.pipeline import working_size


@torch.no_grad()
def methods(model, blurred: torch.Tensor) -> dict[str, torch.Tensor]:
    H, W = blurred.shape[-2:]
    work = working_size(W, H, model.cfg.input_size)
    up = lambda x: F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    small = resize(blurred, work).clamp(0, 1)
    small_out = model.deblur(small)
    out = {"blurred": blurred, "working size, upsampled": up(small_out).clamp(0, 1),
           "working size, residual": (blurred + up(small_out - small)).clamp(0, 1),
           "one pass at full size": tiled(model.deblur, blurred)}
    for s in (2, 4):
        x = resize(blurred, (round(W / s), round(H / s))).clamp(0, 1)
        out[f"1/{s} size, residual"] = (blurred + up(tiled(model.deblur, x) - x)).clamp(0, 1)
    fused, scales = deblur_full(model.deblur, blurred, work[0] * work[1])
    out[f"fusion of scales {scales} (wfb reconstruct)"] = fused
    return out


def main() -> None:
    args = video_arguments(__doc__).parse_args()
    frames = video_frames(args)
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    scores: dict[str, list[float]] = {}
    for c, n in windows(frames, args.every, args.lengths):
        stack = torch.stack([read(p) for p in frames[c - n // 2:c + n // 2 + 1]])
        blurred, sharp = blur_frames(stack, 0)[None], stack[n // 2][None]
        for name, x in methods(model, blurred).items():
            scores.setdefault(name, []).append(psnr(x, sharp))
    base = statistics.mean(scores["blurred"])
    rows = [[name, f"{statistics.mean(v):.2f}", f"{statistics.mean(v) - base:+.2f}",
             f"{sum(a > b for a, b in zip(v, scores['blurred']))}/{len(v)}"] for name, v in scores.items()]
    W, H = blurred.shape[-1], blurred.shape[-2]
    print(f"{len(scores['blurred'])} blurred frames of {W}x{H} from {args.frames} (lengths {args.lengths}, linear "
          f"light); {machine()}\n")
    print(table(["method", "PSNR dB", "vs blurred", "frames improved"], rows))


if __name__ == "__main__":
    main()
