"""``wfb evaluate``: run models on a dataset split and write the paper's tables (JSON first, Markdown from it).

Every model runs the whole cycle on the blurred input: the deblurred frame is compared with the sharp reference
(Table 2), the depth estimated from it with the ground-truth depth (Table 3), and the motion estimated from the
blurred and deblurred images with the ground-truth poses (Table 1, in time order as the paper scores it, and up to
time reversal). Reference columns give the numbers meaning: the blurred input taken as the deblurred image, zero
motion, and a constant depth equal to the median ground-truth depth of the training split. Table 2b splits the
deblurring by how far the true exposure moved the pixels, since a mean over all samples can hide a module that
sharpens long blur and damages nearly sharp images.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import BlurDataset, DatasetError
from ..data.exposure import choose_subframes
from ..errors import WfbError
from ..geometry import pose_from_uv
from ..models.io import load_model
from ..reconstruct.deconvolve import DEFAULT_WEIGHT as DECONV_WEIGHT
from ..reconstruct.deconvolve import deconvolve as deconvolve_frame
from ..reconstruct.refine import refine as refine_motion
from .figures import figure_panel
from .metrics import (
    DEPTH_KEYS,
    MOTION_KEYS,
    depth_metrics,
    image_metrics,
    image_psnrs,
    motion_errors,
)


def _mean_dicts(rows: list[dict], weights: list[int]) -> dict:
    """Weighted means of per-batch metrics; ``scale_ratio``, a geometric mean, is averaged as a logarithm."""
    w = np.asarray(weights, dtype=float)
    log = {"scale_ratio"}
    out = {k: float(np.sum([(np.log(r[k]) if k in log else r[k]) * wi for r, wi in zip(rows, w)]) / w.sum())
           for k in rows[0]}
    return {k: float(np.exp(v)) if k in log else v for k, v in out.items()}


BLUR_BINS = (0.0, 3.0, 8.0, 16.0)
"""Lower edges of Table 2b's rows, in pixels of the median pixel path over the true exposure at the data's size
(as ``wfb make-dataset`` reports ``blur_px_median``): nearly sharp, short, medium and long blur."""


def blur_lengths(depth: torch.Tensor, poses: torch.Tensor, K: torch.Tensor) -> np.ndarray:
    """(B,) the median pixel path (px) of each sample's true exposure, from its depth (B, 1, H, W; 0 = no reading),
    poses (B, 2n, 4, 4) and K (B, 3, 3); NaN for a sample without a depth reading."""
    out = []
    for d, T, k in zip(depth[:, 0].double().cpu().numpy(), poses.double().cpu().numpy(), K.double().cpu().numpy()):
        out.append(choose_subframes(d, T, k, 1.0, 1)[1]["blur_px_median"] if (d > 0).any() else float("nan"))
    return np.asarray(out)


def by_blur(lengths: Sequence[float], values: Sequence[float]) -> list[dict]:
    """Mean of ``values`` per :data:`BLUR_BINS` row of the samples' blur ``lengths`` (rows without samples kept,
    with ``samples`` 0 and ``psnr`` None; the last row's ``to_px`` is None: no upper edge)."""
    lengths, values = np.asarray(lengths, float), np.asarray(values, float)
    rows = []
    for lo, hi in zip(BLUR_BINS, BLUR_BINS[1:] + (float("inf"),)):
        inside = (lengths >= lo) & (lengths < hi)
        rows.append({"from_px": lo, "to_px": None if hi == float("inf") else hi, "samples": int(inside.sum()),
                     "psnr": float(values[inside].mean()) if inside.any() else None})
    return rows


def median_depth(depth_maps: Iterable, limit: int = 200) -> float:
    """The median-depth reference: the median of every 97th valid (> 0) reading of up to ``limit`` depth maps
    spread evenly over ``depth_maps`` (a sequence of arrays or tensors, metres) -- of the *training* data, the
    constant a model could have learnt from it."""
    maps = list(depth_maps) if not isinstance(depth_maps, Sequence) else depth_maps
    if len(maps) == 0:
        raise WfbError("no depth maps to take the reference median depth from")
    values = []
    for i in np.linspace(0, len(maps) - 1, min(limit, len(maps))).astype(int):
        d = np.asarray(maps[int(i)], dtype=np.float64)
        values.append(d[d > 0][::97])
    return float(np.median(np.concatenate(values)))


class _Depths(Sequence):
    """A dataset's depth maps as a lazy sequence (only the ones :func:`median_depth` picks are read)."""

    def __init__(self, ds: BlurDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds.record(i).depth


def reference_median_depth(root: Path) -> tuple[float, str]:
    """(:func:`median_depth` of a built dataset's training split, where it was taken): ``"training split"``, or
    ``"all samples"`` when the dataset has none, and the constant then knows the scale of the scenes it is scored on."""
    try:
        ds, where = BlurDataset(root, split="train"), "training split"
    except DatasetError:
        ds, where = BlurDataset(root, split="all"), "all samples"
    if len(ds) == 0:
        ds, where = BlurDataset(root, split="all"), "all samples"
    return median_depth(_Depths(ds)), where


def score_models(models: list[tuple[str, torch.nn.Module, dict]], batches: Callable[[], Iterable[dict]],
                 reference_depth: float, device: str | torch.device = "cpu", progress: bool = True,
                 figures: int = 0, out: Path | None = None, total: int | None = None,
                 refine: Callable | None = None, deconvolve: Callable | None = None) -> dict:
    """The evaluator: every model's cycle on every batch, scored by the paper's metrics, beside the reference
    columns. ``wfb evaluate`` and the held-out evaluation of ``wfb train-model`` both score through here.

    Args:
        models: (label, model, where its weights came from).
        batches: a function returning a fresh iterable of batches (dicts with ``blurred``, ``sharp``, ``depth``,
            ``valid_depth``, ``poses`` and ``K``), the same samples each call.
        reference_depth: the constant of the median-depth column (:func:`median_depth` of the training data).
        figures, out: write a Fig. 7-style panel of the first ``figures`` samples per model to ``out/figures``.
        refine: also score the trajectory after test-time refinement: ``refine(blurred, deblurred, depth, u, v, K,
            averaging)`` on one sample (each (1, ...)) returns the refined (u, v) (``wfb evaluate --refine`` passes
            ``wfb reconstruct``'s); the model's ``refined`` scores.
        deconvolve: with ``refine``, also score the sharp frame that ``deconvolve(blurred, deblurred, depth, u, v,
            K)`` makes from the network's frame and the refined trajectory (``wfb evaluate --deconvolve`` passes
            :func:`deconvolver`, ``wfb reconstruct --deconvolve``'s at the data's size); the model's ``refined``
            ``image`` and ``image_by_blur``.

    Returns:
        ``{"models": {label: {...}}, "references": {...}, "num_samples": N}``: per model the mean image, depth
        (metric, and each map scaled to its ground truth's median: ``depth_aligned``) and motion metrics (in time
        order and up to reversal), the re-blur PSNR, and what it is made of; ``image_by_blur``, the deblurring PSNR
        per row of :data:`BLUR_BINS` (also for the blurred input).
    """
    report = {"models": {}, "references": {}, "num_samples": 0}
    ref_rows: dict[str, list] = {"image": [], "motion": [], "depth": [], "depth_aligned": [], "n": [], "blur": [],
                                 "psnr": []}
    if deconvolve is not None and refine is None:
        raise WfbError("deconvolution scores the frame made with the refined trajectory: give refine too")
    for label, model, sources in models:
        model.to(device).eval()
        rows: dict[str, list] = {"image": [], "depth": [], "depth_aligned": [], "motion": [], "motion_rev": [],
                                 "reblur": [], "n": [], "refined": [], "refined_rev": [], "psnr": [],
                                 "deconvolved": [], "deconvolved_psnr": []}
        fig_done = 0
        for batch in tqdm(batches(), total=total, desc=f"evaluate {label}", unit="batch", file=sys.stderr,
                          disable=not progress):
            b = {k: v.to(device) for k, v in batch.items()}
            with torch.no_grad():
                outp = model(b["blurred"], b["K"])
            n = b["blurred"].shape[0]
            rows["n"].append(n)
            rows["image"].append(image_metrics(outp["deblurred"], b["sharp"]))
            rows["psnr"] += image_psnrs(outp["deblurred"], b["sharp"])
            rows["depth"].append(depth_metrics(outp["depth"], b["depth"], b["valid_depth"]))
            rows["depth_aligned"].append(depth_metrics(outp["depth"], b["depth"], b["valid_depth"], align=True))
            rows["motion"].append(motion_errors(outp["poses"], b["poses"]))
            rows["motion_rev"].append(motion_errors(outp["poses"], b["poses"], reversal="min"))
            rows["reblur"].append({"psnr": image_metrics(outp["reblurred"], b["blurred"])["psnr"]})
            if refine is not None:
                uv = _refined_trajectories(refine, b, outp, model.cfg.averaging)
                poses = torch.cat([pose_from_uv(u, v) for u, v in uv]).to(b["poses"].device)
                rows["refined"].append(motion_errors(poses, b["poses"]))
                rows["refined_rev"].append(motion_errors(poses, b["poses"], reversal="min"))
                if deconvolve is not None:
                    frames = torch.cat([deconvolve(*_sample(i, b, outp, "depth"), u, v, b["K"][i:i + 1])
                                        for i, (u, v) in enumerate(uv)])
                    rows["deconvolved"].append(image_metrics(frames, b["sharp"]))
                    rows["deconvolved_psnr"] += image_psnrs(frames, b["sharp"])
            if not report["references"]:
                ref_rows["n"].append(n)
                ref_rows["image"].append(image_metrics(b["blurred"], b["sharp"]))
                ref_rows["psnr"] += image_psnrs(b["blurred"], b["sharp"])
                ref_rows["blur"] += list(blur_lengths(b["depth"], b["poses"], b["K"]))
                ref_rows["motion"].append(motion_errors(torch.eye(4).expand_as(b["poses"].cpu()), b["poses"]))
                constant = torch.full_like(b["depth"], reference_depth)
                ref_rows["depth"].append(depth_metrics(constant, b["depth"], b["valid_depth"]))
                ref_rows["depth_aligned"].append(depth_metrics(constant, b["depth"], b["valid_depth"], align=True))
            if out is not None and fig_done < figures:
                for i in range(min(n, figures - fig_done)):
                    figure_panel(b, outp, i, out / "figures" / f"{label}-{fig_done:04d}.png")
                    fig_done += 1
        if not report["references"]:
            report["num_samples"] = int(sum(ref_rows["n"]))
            report["references"] = {
                "blurred input": {"image": _mean_dicts(ref_rows["image"], ref_rows["n"]),
                                  "image_by_blur": by_blur(ref_rows["blur"], ref_rows["psnr"])},
                "zero motion": {"motion": _mean_dicts(ref_rows["motion"], ref_rows["n"])},
                "median depth": {"depth": _mean_dicts(ref_rows["depth"], ref_rows["n"]),
                                 "depth_aligned": _mean_dicts(ref_rows["depth_aligned"], ref_rows["n"])},
            }
        report["models"][label] = {
            "checkpoint": sources,
            "modules": {"deblur": model.cfg.deblur, "depth": model.cfg.depth, "motion": model.cfg.motion},
            "image": _mean_dicts(rows["image"], rows["n"]),
            "image_by_blur": by_blur(ref_rows["blur"], rows["psnr"]),
            "depth": _mean_dicts(rows["depth"], rows["n"]),
            "depth_aligned": _mean_dicts(rows["depth_aligned"], rows["n"]),
            "motion": _mean_dicts(rows["motion"], rows["n"]),
            "motion_up_to_reversal": _mean_dicts(rows["motion_rev"], rows["n"]),
            "reblur_psnr": _mean_dicts(rows["reblur"], rows["n"])["psnr"],
        }
        if refine is not None:
            report["models"][label]["refined"] = {"motion": _mean_dicts(rows["refined"], rows["n"]),
                                                  "motion_up_to_reversal": _mean_dicts(rows["refined_rev"], rows["n"])}
        if deconvolve is not None:
            report["models"][label]["refined"].update(image=_mean_dicts(rows["deconvolved"], rows["n"]),
                                                      image_by_blur=by_blur(ref_rows["blur"], rows["deconvolved_psnr"]))
        model.to("cpu")
    return report


def refiner(steps: int, roll_prior: float | None = None) -> Callable | None:
    """``wfb reconstruct``'s test-time refinement of the motion with ``steps`` iterations (and its roll prior, or
    ``roll_prior``), in the form :func:`score_models` takes (None for 0: the network's own trajectory only)."""
    if steps < 0:
        raise WfbError(f"refinement steps must be 0 (off) or a number of iterations, got {steps}")
    if steps == 0:
        return None

    def run(blurred, sharp, depth, u, v, K, averaging):
        r = refine_motion(blurred, sharp, depth, u, v, K, steps, averaging=averaging, roll_prior=roll_prior)
        return r.u, r.v

    return run


def deconvolver(weight: float = DECONV_WEIGHT) -> Callable:
    """``wfb reconstruct --deconvolve``'s deconvolution at the model's size (one pass, no tiles), in the form
    :func:`score_models` takes."""

    def run(blurred, deblurred, depth, u, v, K):
        return deconvolve_frame(blurred, deblurred, depth, u, v, K, weight=weight, tile=0)

    return run


def _sample(i: int, b: dict, outp: dict, depth: str = "motion_depth") -> list[torch.Tensor]:
    """(blurred, deblurred, depth) of sample ``i`` of a batch and the model's output on it, each (1, ...). As in
    ``wfb reconstruct``, refinement reads the depth the motion was solved with (``motion_depth``) and deconvolution
    the output's (``depth``)."""
    return [b["blurred"][i:i + 1], outp["deblurred"][i:i + 1], outp[depth][i:i + 1]]


def _refined_trajectories(refine: Callable, b: dict, outp: dict, averaging: str) -> list[tuple]:
    """Each sample's (u, v), each (1, 2n, 3), after ``refine`` (see :func:`score_models`)."""
    out = []
    for i in range(b["blurred"].shape[0]):
        with torch.enable_grad():
            out.append(refine(*_sample(i, b, outp), outp["u"][i:i + 1], outp["v"][i:i + 1], b["K"][i:i + 1],
                              averaging=averaging))
    return out


def size_warnings(models: list[tuple], width: int, height: int, data: Path) -> list[str]:
    """One line per model whose working size (``input_size``) is not the data's ``width`` x ``height``: ``wfb
    evaluate`` runs the networks at the data's size, where ``wfb reconstruct`` would resize a photo to the model's
    size first (and, for a photo 2.5 times larger, read the depth from a larger deblurred frame), so its scores are
    not those of a reconstruction."""
    lines = []
    for label, model, *_ in models:
        size = model.cfg.input_size
        if size and (int(size[0]), int(size[1])) != (width, height):
            lines.append(f"{data}: its samples are {width}x{height}, but {label!r} works at {size[0]}x{size[1]}; wfb "
                         "evaluate runs the networks at the data's size, wfb reconstruct at the model's: build the data "
                         f"with --size {size[0]}x{size[1]} to score what wfb reconstruct does (docs/evaluation.md)")
    return lines


def evaluate(specs: list[tuple[str, str]], data: Path, split: str = "test", device: str = "cpu",
             batch_size: int = 4, figures: int = 0, out: Path | None = None, progress: bool = True,
             refine: Callable | None = None, deconvolve: Callable | None = None,
             reference_depth: float | None = None) -> dict:
    """Evaluate each ``(label, checkpoint spec)`` on ``data``/``split``; returns the report dict (``refine``,
    ``deconvolve``: see :func:`score_models`; ``reference_depth``: the median-depth column's constant, by default
    :func:`reference_median_depth`)."""
    try:
        ds = BlurDataset(data, split=split)
    except DatasetError as err:
        raise WfbError(str(err)) from None
    if len(ds) == 0:
        raise WfbError(f"{data}: split {split!r} has no samples; choose another --split")
    models = [(label, *load_model(spec)) for label, spec in specs]  # fail on a bad checkpoint before any work
    height, width = ds.record(0).blurred.shape[:2]
    for line in size_warnings(models, width, height, data):
        print(f"wfb: warning: {line}", file=sys.stderr)
    if reference_depth is None:
        median, where = reference_median_depth(Path(data))
    else:
        median, where = float(reference_depth), "given"
    loader = DataLoader(ds, batch_size=batch_size, num_workers=0)
    scores = score_models(models, lambda: loader, median, device, progress, figures, out, total=len(loader),
                          refine=refine, deconvolve=deconvolve)
    return {"data": str(data), "split": split, "num_samples": len(ds), "median_train_depth_m": median,
            "reference_depth_from": where, "models": scores["models"], "references": scores["references"]}


# ------------------------------------------------------------------------------------------------- Markdown

MOTION_ROWS = [("Translation x (cm)", "tx"), ("Translation y (cm)", "ty"), ("Translation z (cm)", "tz"),
               ("Yaw (°)", "yaw"), ("Pitch (°)", "pitch"), ("Roll (°)", "roll")]
DEPTH_ROWS = [("Abs Rel", "abs_rel"), ("Sq Rel", "sq_rel"), ("RMSE", "rmse"), ("RMSE log", "rmse_log"),
              ("δ < 1.25", "a1"), ("δ < 1.25²", "a2"), ("δ < 1.25³", "a3")]
assert {k for _, k in MOTION_ROWS} == set(MOTION_KEYS) and {k for _, k in DEPTH_ROWS} == set(DEPTH_KEYS)


def _table(title: str, rows: list[tuple[str, str]], columns: list[tuple[str, dict | None]], fmt: str) -> str:
    head = "| Term | " + " | ".join(c for c, _ in columns) + " |"
    lines = [f"**{title}**", "", head, "|---|" + "---|" * len(columns)]
    for name, key in rows:
        cells = [(format(vals[key], fmt) if vals is not None else "") for _, vals in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _blur_table(columns: list[tuple[str, list[dict]]]) -> str:
    """Table 2b: deblurring PSNR per blur length (the median pixel path of the true exposure); ``columns`` are
    (label, :func:`by_blur` rows)."""
    head = "| Blur | samples | " + " | ".join(c for c, _ in columns) + " |"
    lines = ["**Table 2b. Deblurring PSNR (dB) by blur length (median pixel path of the true exposure)**", "", head,
             "|---|---|" + "---|" * len(columns)]
    for i, row in enumerate(columns[0][1]):
        span = f"{row['from_px']:g}+ px" if row["to_px"] is None else f"{row['from_px']:g}-{row['to_px']:g} px"
        cells = [format(rows[i]["psnr"], ".2f") if row["samples"] else "" for _, rows in columns]
        lines.append(f"| {span} | {row['samples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables_markdown(report: dict) -> str:
    models = report["models"]
    refs = report["references"]
    parts = [f"Evaluated on `{report['data']}`, split `{report['split']}` ({report['num_samples']} samples). "
             "Every model runs the whole cycle on the blurred input."]
    def with_refined(key: str) -> list:
        cols = []
        for k, m in models.items():
            cols.append((k, m[key]))
            if "refined" in m:
                cols.append((f"{k} + refinement", m["refined"][key]))
        return cols + [("zero motion", refs["zero motion"]["motion"])]

    motion_cols = with_refined("motion")
    parts.append(_table("Table 1. Motion: mean absolute error per axis (time order, as the paper scores it)",
                        MOTION_ROWS, motion_cols, ".3f"))
    rev_cols = with_refined("motion_up_to_reversal")
    parts.append(_table("Table 1b. Motion up to time reversal (each sample scored in its closer order)",
                        MOTION_ROWS, rev_cols, ".3f"))
    deconvolved = {k: m["refined"] for k, m in models.items() if "image" in m.get("refined", {})}
    image_cols, blur_cols = [], []
    for k, m in models.items():
        image_cols.append((k, m["image"]))
        blur_cols.append((k, m.get("image_by_blur")))
        if k in deconvolved:
            image_cols.append((f"{k} + refinement + deconvolution", deconvolved[k]["image"]))
            blur_cols.append((f"{k} + refinement + deconvolution", deconvolved[k]["image_by_blur"]))
    image_cols.append(("blurred input", refs["blurred input"]["image"]))
    parts.append(_table("Table 2. Deblurring", [("PSNR (dB)", "psnr"), ("SSIM", "ssim")], image_cols, ".4g"))
    blur_cols.append(("blurred input", refs["blurred input"].get("image_by_blur")))
    if all(rows for _, rows in blur_cols):  # reports written before Table 2b have none
        parts.append(_blur_table(blur_cols))
    depth_cols = [(k, m["depth"]) for k, m in models.items()] + [("median depth", refs["median depth"]["depth"])]
    parts.append(_table("Table 3. Depth", DEPTH_ROWS, depth_cols, ".3f"))
    aligned_cols = [(k, m["depth_aligned"]) for k, m in models.items()]
    aligned_cols.append(("median depth", refs["median depth"]["depth_aligned"]))
    scale_rows = [("Scale removed (abs. log)", "scale_log")]
    if all("scale_ratio" in vals for _, vals in aligned_cols):  # reports written before it have none
        scale_rows.append(("Scale of the prediction (median pred. / true, geom. mean)", "scale_ratio"))
    parts.append(_table("Table 3b. Depth with each map scaled to its ground truth's median (the shape alone; the last "
                        "rows are the scale error that removed, the mean abs. log ratio, and its direction, below 1 "
                        "when the depth is read too near; the median-depth column is then each image's own median)",
                        DEPTH_ROWS + scale_rows, aligned_cols, ".3f"))
    reblur = ", ".join(f"{k} {m['reblur_psnr']:.2f} dB" for k, m in models.items())
    where = report.get("reference_depth_from", "training split")
    constant = {"training split": "the median depth of the data's training split",
                "all samples": "the median depth of all the data's samples (it has no training split, so the "
                               "constant knows these scenes' scale; --reference-depth sets another)",
                "given": "given (--reference-depth)"}.get(where, where)
    parts.append(f"Re-blur PSNR against the input: {reblur}. The median-depth column's constant: "
                 f"{report['median_train_depth_m']:.2f} m, {constant}.")
    if any(m["modules"]["depth"] == "eigen" for m in models.values()):
        label = {k: f"{k} ({m['modules']['depth']} depth)" for k, m in models.items()}
        parts.append(_table("Table 4. Depth by depth module", DEPTH_ROWS, [(label[k], m["depth"]) for k, m in models.items()], ".3f"))
        parts.append(_table("Table 5. Deblurring by depth module", [("PSNR (dB)", "psnr"), ("SSIM", "ssim")],
                            [(label[k], m["image"]) for k, m in models.items()], ".4g"))
        parts.append(_table("Table 6. Motion by depth module", MOTION_ROWS, [(label[k], m["motion"]) for k, m in models.items()], ".3f"))
    return "\n\n".join(parts) + "\n"


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("metrics.json", json.dumps(report, indent=1) + "\n"), ("tables.md", tables_markdown(report))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
