"""``wfb reconstruct``: blurred photos in, one folder of 3D outputs per photo (see docs/reconstruct.md)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..devices import resolve_device
from ..errors import WfbError
from .arguments import count


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="recover the trajectory, sharp frame, depth and 3D points of blurred photos",
        description="Reconstruct each blurred photo (PNG, JPEG, TIFF or WebP; files or folders of them) into "
        "OUT/<photo name>/: deblurred.png, depth.png (16-bit mm), depth_vis.png, trajectory.txt (TUM), poses.json, "
        "frames/, reblurred.png, points.ply, scene.html, summary.png and summary.json. Uses the shipped model "
        "unless --checkpoint is given.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER", help="photos, or folders of photos")
    p.add_argument("--out", type=Path, required=True, help="output folder; must not exist yet (or be empty)")
    p.add_argument("--checkpoint", help="checkpoint or run folder (default: the shipped model)")
    p.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics in pixels of the input photo (default: EXIF 35 mm focal length, else a "
                   "63.3 degree horizontal field of view, with a warning)")
    p.add_argument("--refine", type=int, default=None, metavar="STEPS",
                   help="test-time refinement fitting the trajectory to the photo's own blur: the most Gauss-Newton "
                   "iterations (Adam steps with --refine-sharp); default 15, 0 turns it off")
    p.add_argument("--fast", action="store_true", help="no test-time refinement (the same as --refine 0): the "
                   "networks' trajectory as it is, about half a second sooner per photo")
    p.add_argument("--refine-sharp", action="store_true",
                   help="also refine the deblurred frame (jointly with the trajectory, by Adam)")
    p.add_argument("--refine-motion", choices=["smooth", "free"], default="smooth",
                   help="refined rotation model: smooth (constant angular velocity and acceleration over the "
                   "exposure, the default) or free (every pose on its own)")
    p.add_argument("--refine-translation", action="store_true",
                   help="also refine the translations (by default they stay the networks'; see docs/reconstruct.md)")
    p.add_argument("--refine-robust", type=float, default=None, metavar="K",
                   help="Huber threshold of the motion fit, in robust standard deviations of the re-blur residual: "
                   "pixels that fit worse (something that moved by itself) weigh less; e.g. 3 (default 0: least "
                   "squares; see docs/reconstruct.md)")
    p.add_argument("--refine-roll-prior", type=float, default=None, metavar="W",
                   help="how strongly the motion fit keeps roll (rotation about the optical axis, which moves the "
                   "image least) small: a roll of 1 degree (or half the yaw and pitch, if more) costs W times the "
                   "starting misfit (default 0.06; 0: none; see docs/reconstruct.md)")
    p.add_argument("--deconvolve", action="store_true",
                   help="solve for the sharp frame at the output size so that its re-blur with the (refined) "
                   "trajectory matches the photo, kept near the network's frame; slower, and off by default because "
                   "it does not yet raise PSNR on real blur (docs/reconstruct.md)")
    p.add_argument("--max-pixels", type=count, default=None, metavar="N",
                   help="largest output in pixels; larger photos are reduced to it, aspect ratio kept (default "
                   "4000000; outputs are at the photo's own size below it)")
    p.add_argument("--max-points", type=count, default=None, metavar="N",
                   help="largest point cloud; above it the cloud comes from the outputs reduced to N pixels "
                   "(default 1000000)")
    p.add_argument("--tile", type=int, default=None, metavar="PIXELS",
                   help="side of the tiles full-resolution deblurring runs on, to bound memory (default 1024; 0: "
                   "one pass)")
    p.add_argument("--mesh", action="store_true", help="also write mesh.ply, a surface over the depth map with "
                   "disocclusion edges removed")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu or cuda (default auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="number format of the deblurring network at the photo's size: auto (bf16 where the CPU or "
                   "GPU computes it natively, about twice as fast for the same PSNR; fp32 elsewhere), fp32 (the same "
                   "result on every machine) or bf16")
    p.add_argument("--json", action="store_true", help="print a JSON list of the per-photo summaries on stdout")
    p.add_argument("--skip-errors", action="store_true",
                   help="skip photos that cannot be read (reported and counted) instead of stopping at the first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_options(args) -> None:
    from ..reconstruct.refine import DEFAULT_STEPS

    if args.fast and args.refine:
        raise WfbError(f"--fast turns refinement off but --refine {args.refine} asks for it; give one of them")
    if args.refine is None:
        args.refine = 0 if args.fast else DEFAULT_STEPS
    if args.refine < 0:
        raise WfbError(f"--refine must be 0 or more steps, got {args.refine}")
    for flag, value, zero in (("--refine-robust", args.refine_robust, "least squares"),
                              ("--refine-roll-prior", args.refine_roll_prior, "none")):  # the motion fit's options
        if value is not None and not value >= 0:
            raise WfbError(f"{flag} must be 0 ({zero}) or more, got {value}")
        if value is not None and args.refine_sharp:
            raise WfbError(f"{flag} applies to the motion fit, which --refine-sharp replaces; give one of them")
    for flag, used in (("--refine-sharp", args.refine_sharp), ("--refine-translation", args.refine_translation),
                       ("--refine-motion", args.refine_motion != "smooth"),
                       ("--refine-robust", args.refine_robust is not None),
                       ("--refine-roll-prior", args.refine_roll_prior is not None)):
        if used and not args.refine:
            raise WfbError(f"{flag} needs refinement; drop --fast / --refine 0")
    if args.tile is not None and (args.tile < 0 or 0 < args.tile < 128):
        raise WfbError(f"--tile must be 0 (no tiling) or at least 128 pixels, got {args.tile}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise WfbError(f"{args.out}: already exists; choose a new --out (nothing was written)")


def _usable(photos: list[Path], skip_errors: bool, bad: list[str]) -> list[Path]:
    """The photos whose headers are readable; every header is checked before anything is written or loaded."""
    from ..reconstruct.photo import PhotoError, check_header

    usable = []
    for p in photos:
        try:
            check_header(p)
            usable.append(p)
        except PhotoError as err:
            if not skip_errors:
                raise
            bad.append(str(err))
    return usable


def _engine(args):
    from ..models.io import load_model, shipped_model
    from ..reconstruct.fullres import DEFAULT_MAX_PIXELS, DEFAULT_TILE
    from ..reconstruct.pipeline import Reconstructor

    device = resolve_device(args.device)
    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model()
    if not args.checkpoint and not (checkpoint / "model.safetensors").is_file():
        raise WfbError(f"the shipped model is missing from {checkpoint}; reinstall world-from-blur or pass --checkpoint")
    model, _ = load_model(checkpoint)
    engine = Reconstructor(model, device, args.refine, args.refine_sharp, args.refine_motion, args.refine_translation,
                           refine_robust=args.refine_robust, refine_roll_prior=args.refine_roll_prior,
                           max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                           tile=DEFAULT_TILE if args.tile is None else args.tile, deconvolve=args.deconvolve,
                           precision=args.precision)
    return engine, checkpoint


def _one(args, engine, checkpoint: Path, photo) -> dict:
    """Reconstruct and write one loaded photo; warnings to stderr, its line to stdout."""
    from tqdm import tqdm

    from ..reconstruct.fullres import DEFAULT_MAX_POINTS
    from ..reconstruct.outputs import write_outputs
    path = photo.path
    rec = engine(photo, args.intrinsics)
    if rec.K_source == "default":
        print(f"wfb: warning: {path}: no --intrinsics and no EXIF focal length; assuming a "
              f"63.3 degree horizontal field of view, so depth and motion are only as right as that guess",
              file=sys.stderr)
    if any(rec.degenerate):
        print(f"wfb: warning: {path}: the photo does not determine the camera's rotation at {sum(rec.degenerate)} of "
              f"the {len(rec.degenerate)} instants (a flat scene through a narrow field of view: turning and moving "
              "sideways blur it alike); the trajectory there is the model's guess, see motion_degenerate in "
              "summary.json and docs/reconstruct.md", file=sys.stderr)
    fallback = rec.refine_options.get("fallback")
    if fallback:
        print(f"wfb: warning: {path}: refinement kept the networks' trajectory: {fallback}", file=sys.stderr)
    if rec.out.size != photo.size:
        tqdm.write(f"wfb: note: {path}: {photo.size[0]}x{photo.size[1]} is over --max-pixels {engine.max_pixels}; "
                   f"outputs are at {rec.out.size[0]}x{rec.out.size[1]}", file=sys.stderr)
    summary = write_outputs(rec, args.out / path.stem, mesh=args.mesh, checkpoint=str(checkpoint),
                            max_points=args.max_points or DEFAULT_MAX_POINTS)
    if not args.json:
        refined = (f" (network {summary['reblur_psnr_network_db']:.2f} dB, refined in "
                   f"{rec.refine_options['iterations']} steps, rotation moved "
                   f"{rec.refine_options['moved_deg']:.2f} deg)"
                   if rec.refine_steps else "")
        tqdm.write(f"{path} -> {args.out / path.stem}: re-blur PSNR {summary['reblur_psnr_db']:.2f} dB{refined}, "
                   f"depth {summary['depth_m']['min']:.2f}-{summary['depth_m']['max']:.2f} m, "
                   f"intrinsics from {rec.K_source}", file=sys.stdout)
    return summary


def run(args) -> int:
    from tqdm import tqdm

    from ..reconstruct.photo import PhotoError, find_photos, load_photo

    _check_options(args)
    out: Path = args.out
    photos = find_photos(args.inputs)
    bad: list[str] = []
    usable = _usable(photos, args.skip_errors, bad)
    engine, checkpoint = _engine(args)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for warning in bad:
        print(f"wfb: warning: skipped {warning}", file=sys.stderr)
    bar = tqdm(usable, desc="reconstruct", unit="photo", file=sys.stderr, disable=args.quiet or len(usable) < 2)
    try:
        for path in bar:
            try:
                photo = load_photo(path)
            except PhotoError as err:
                if not args.skip_errors:
                    raise
                bad.append(str(err))
                print(f"wfb: warning: skipped {err}", file=sys.stderr)
                continue
            summaries.append(_one(args, engine, checkpoint, photo))
    except BaseException as err:
        if created and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        elif isinstance(err, WfbError) and summaries:
            raise WfbError(f"{err} ({len(summaries)} finished reconstruction(s) are kept in {out})") from None
        raise
    finally:
        bar.close()
    if not summaries:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise WfbError(f"none of the {len(photos)} photo(s) could be read; nothing was written")
    if args.json:
        json.dump({"reconstructions": summaries, "skipped": bad}, sys.stdout, indent=1)
        print()
    elif bad:
        print(f"skipped {len(bad)} unreadable photo(s); see the warnings above", file=sys.stderr)
    return 0
