"""Rotation axes on real camera blur from high-frame-rate video: the truth measured from the sharp frames themselves.

    python -m experiments.video_rotation FRAMES_DIR [--every 20] [--lengths 13] [--min-deg 0.3] [--steps 15]
                                         [--camera-share 0.5] [--true-frame] [--reference-scale 3]
                                         [--checkpoint RUN]

FRAMES_DIR holds consecutive frames of a hand-held high-frame-rate video (the 240 fps GoPro sequence of
``jeffreywolberg/deblurring_dataset_generator``, ``data/level3/videos/GOPR0477_11_00``: a person dribbling a ball on
an outdoor court, filmed from one to a few metres, a scene no training pool contains). Every ``--every`` frames, the
N frames of a window are averaged in linear light into one blurred image (:mod:`benchmarks.video`). The camera's
rotation over the window is measured from its first and last sharp frames: the rotation R whose homography
``K R K^-1`` best aligns them (Huber-weighted grey residuals, Levenberg-Marquardt to convergence, coarse to fine up
to 320 pixels wide), with ``K`` the one ``wfb reconstruct`` assumes for a photo without EXIF (63 degrees across), so
that truth and reconstruction describe the same pixel motion. Windows whose measured rotation is below ``--min-deg``
are skipped (the axis of no motion means nothing).

The truth is only as good as the rotation model of the two frames. The table gives, per window, the **camera
share**: how much of the mean grey difference between the first and last frames the measured rotation removes
(``1 - after / before``), and the **reverse check**: the angle between the rotation axes measured first-to-last
and last-to-first, which a consistent measurement keeps near zero. Where the camera share is low, the frames differ
mostly by something a camera rotation cannot explain (here the player's own movement close to the lens, and the
parallax of the court a metre or two away), and so does the blur; neither the measured nor any reconstructed camera
rotation then accounts for it. The medians are given over all windows and over the windows whose camera share is
at least ``--camera-share``.

Each blurred image is reconstructed by ``wfb reconstruct``'s engine (outputs kept near the working size) with the
shipped model (or ``--checkpoint``), without refinement and with the default refinement, and scored by the angle
between the measured and the reconstructed rotation axes up to sign (a blurred image is the same whichever way time
runs; random axes score 57 degrees median), as :mod:`experiments.real_motion` does for motion-capture poses.
``--true-frame`` adds the default refinement started from the video's own sharp centre frame instead of the
deblurring network's frame: what the fit does once the deblurring is perfect, which separates the deblurrer's share
of the error from the motion model's. Each window also scores the frame the default refinement starts from against
the true centre frame at the same size: PSNR, and edge energy (:func:`worldfromblur.evaluation.edge_energies`: 1 is
as much fine detail as the truth, below 1 softer). A softer frame is re-blurred into the photo best by a smaller
motion, so the edge energy, not the PSNR, is what tells a deblurrer that serves refinement.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch

from benchmarks.common import machine, table
from benchmarks.video import read, video_arguments, video_frames
from experiments.real_motion import engines_for, score_axes
from worldfromblur.evaluation.metrics import edge_energies, image_psnrs
from worldfromblur.evaluation.video import (
    CAMERA_SHARE,
    axis_angle,
    axis_error_deg,
    blurred_photo,
    intrinsics_of,
    measure_rotation,
    measure_windows,
    rotation_matrix,
)
from worldfromblur.models.io import load_model, shipped_model
from worldfromblur.reconstruct import Reconstructor, pipeline
from worldfromblur.reconstruct.fullres import resize
from worldfromblur.reconstruct.pipeline import working_size


class TrueFrameReconstructor(Reconstructor):
    """``wfb reconstruct``'s engine whose refinement fits the motion with a given sharp frame (:attr:`true_frame`,
    (3, H, W) at the photo's size) in place of the deblurring network's."""

    true_frame: torch.Tensor | None = None

    def reference(self, photo, K_full, w, h, deblurred, **options):
        if self.true_frame is None:
            return super().reference(photo, K_full, w, h, deblurred, **options)
        return resize(self.true_frame[None], (w, h)).clamp(0, 1)


class RecordingReconstructor(Reconstructor):
    """``wfb reconstruct``'s engine that keeps the frame its refinement started from (:attr:`last_reference`,
    (1, 3, h, w) at the working size)."""

    last_reference: torch.Tensor | None = None

    def reference(self, photo, K_full, w, h, deblurred, **options):
        self.last_reference = super().reference(photo, K_full, w, h, deblurred, **options)
        return self.last_reference


def frame_scores(frame: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and edge energy of refinement's frame (1, 3, h, w) against the true sharp frame (3, H, W), brought
    to the frame's size the way refinement brings its own."""
    h, w = frame.shape[-2:]
    target = resize(truth[None], (w, h)).clamp(0, 1)
    return image_psnrs(frame, target)[0], edge_energies(frame, target)[0]


def summary_rows(measured: list[float], shares: list[float], errors: dict, least_share: float,
                 frames: list[tuple[float, float]] | None = None) -> list[list[str]]:
    """Median measured rotation and, per engine, median axis error and windows within 15 degrees: over all windows
    and over those whose camera share is at least ``least_share``; with ``frames`` (PSNR, edge energy of
    refinement's frame per window), their medians too."""
    rows = []
    for label, keep in (("all windows", [True] * len(shares)),
                        (f"camera share >= {least_share:.0%}", [x >= least_share for x in shares])):
        picked = [k for k, ok in enumerate(keep) if ok]
        if not picked:
            rows.append([label, "0"] + [""] * (1 + len(errors) + 2 * bool(frames)))
            continue
        row = [label, str(len(picked)), f"{statistics.median(measured[k] for k in picked):.2f}"]
        for errs in errors.values():
            e = [errs[k] for k in picked]
            row.append(f"**{statistics.median(e):.1f}** ({sum(x <= 15 for x in e)} within 15)")
        if frames:
            row += [f"{statistics.median(frames[k][0] for k in picked):.2f}",
                    f"{statistics.median(frames[k][1] for k in picked):.3f}"]
        rows.append(row)
    return rows


def main() -> None:
    ap = video_arguments(__doc__)
    ap.set_defaults(lengths=[13])
    ap.add_argument("--min-deg", type=float, default=0.3, help="skip windows that turn less (default 0.3 degrees)")
    ap.add_argument("--steps", type=int, default=None, help="refinement iterations (default: wfb reconstruct's)")
    ap.add_argument("--camera-share", type=float, default=CAMERA_SHARE,
                    help=f"also give the medians over windows whose camera share is at least this (default "
                    f"{CAMERA_SHARE:g})")
    ap.add_argument("--true-frame", action="store_true",
                    help="also refine from the video's sharp centre frame instead of the network's deblurred frame")
    ap.add_argument("--reference-scale", type=float, default=None,
                    help="the size, in working sizes, at which the deblurring network makes refinement's frame "
                         f"(default: wfb reconstruct's, {pipeline.REFERENCE_SCALE:g}; below "
                         f"{pipeline.MIN_REFERENCE_SCALE:g} the networks' working-size frame)")
    ap.add_argument("--refine-roll-prior", type=float, default=None, metavar="W",
                    help="weight of the refinement's roll prior (default: wfb reconstruct's)")
    args = ap.parse_args()
    if args.reference_scale is not None:
        pipeline.REFERENCE_SCALE = args.reference_scale
    frames = video_frames(args)
    model = load_model(args.checkpoint or shipped_model())[0].eval()
    H, W = read(frames[0]).shape[-2:]
    work = working_size(W, H, model.cfg.input_size)
    # outputs at about the working size: only the trajectory is scored
    prior = {} if args.refine_roll_prior is None else {"refine_roll_prior": args.refine_roll_prior}
    engines = engines_for(model, args.steps, max_pixels=work[0] * work[1], **prior)
    options = prior | ({} if args.steps is None else {"refine_steps": args.steps})
    engines["refined"] = RecordingReconstructor(model, "cpu", max_pixels=work[0] * work[1], **options)
    if args.true_frame:
        engines["true frame"] = TrueFrameReconstructor(model, "cpu", max_pixels=work[0] * work[1], **options)
    K_full = intrinsics_of(H, W)
    intrinsics = [float(K_full[0, 0]), float(K_full[1, 1]), float(K_full[0, 2]), float(K_full[1, 2])]
    measured = measure_windows(frames, args.every, args.lengths, args.min_deg)
    if not measured:
        raise SystemExit(f"{args.frames}: no window turns {args.min_deg:g} degrees or more; lower --min-deg")
    rows, errors, frame_quality = [], {k: [] for k in engines}, []
    for w in measured:
        axis = np.asarray(w.axis)
        first, last = (read(frames[k])[None] for k in (w.start, w.start + w.frames - 1))
        back = measure_rotation(last, first, K_full)[0]  # the reverse check
        reverse = axis_error_deg(axis, axis_angle(rotation_matrix(back))[0])
        row = [w.centre, w.frames, f"{w.rotation_deg:.2f}", f"{abs(axis[2]) ** 2 * 100:.0f} %",
               f"{w.error_before:.1f} -> {w.error_after:.1f}", f"{reverse:.1f}", f"{w.camera_share:.0%}"]
        centre = read(frames[w.start + w.frames // 2])
        if "true frame" in engines:
            engines["true frame"].true_frame = centre
        row += score_axes(engines, blurred_photo(frames, w), intrinsics, axis, errors)
        frame_quality.append(frame_scores(engines["refined"].last_reference, centre))
        row += [f"{frame_quality[-1][0]:.2f}", f"{frame_quality[-1][1]:.3f}"]
        rows.append(row)
        print(row, flush=True)
    print(f"\n{len(rows)} blurred windows of {args.frames} (every {args.every}, {args.lengths} frames); "
          f"{machine()}\n")
    names = {"network": "network", "refined": "refined", "true frame": "refined from the true frame"}
    print(table(["centre frame", "frames", "measured rotation (deg)", "roll share", "alignment error (levels)",
                 "reverse check (deg)", "camera share"]
                + [f"{h}, {names[k]} (deg)" for k in engines for h in ("axis error", "rotation")]
                + ["refinement's frame PSNR (dB)", "its edge energy (truth 1)"], rows))
    print()
    print(table(["windows", "count", "measured rotation (deg, median)"]
                + [f"axis error, {names[k]} (deg, median)" for k in engines]
                + ["refinement's frame PSNR (dB, median)", "its edge energy (median)"],
                summary_rows([w.rotation_deg for w in measured], [w.camera_share for w in measured], errors,
                             args.camera_share, frame_quality)))


if __name__ == "__main__":
    main()
