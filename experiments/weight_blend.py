"""Does a blend of two models' weights keep what each reads well? Depth of weight-space interpolations.

    python -m experiments.weight_blend DATASET [DATASET ...] --to CKPT [--from CKPT] [--alphas 0,0.25,0.5,0.75,1]

A fine-tune that moves a model towards new data often reads the old data worse; averaging the weights of the model
before and after it (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022) can keep both when the
two lie in one basin of the loss. Here ``--from`` (default: the shipped model) and ``--to`` (a fine-tune of it, with
the same architecture) are blended as ``(1 - alpha) * from + alpha * to``, every floating-point tensor (batch-norm
statistics too), and for each alpha and each dataset (``--num`` test samples spread over it) this prints the depth's
Abs Rel as returned and after scaling each image by the ratio of its true to its predicted median (the shape alone),
with the evaluator's metric (per image, averaged over images).

If the blends beat both ends somewhere, blending is a cheap way to ship a fine-tune; if every dataset moves
monotonically from one end to the other, the two models differ in what they read, not in noise, and only training
on data that has both can reconcile them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import machine, table
from experiments.refine_inputs import spread_samples
from worldfromblur.evaluation.metrics import depth_metrics
from worldfromblur.models.io import load_model, shipped_model


def blend(state_a: dict, state_b: dict, alpha: float) -> dict:
    """``(1 - alpha) * a + alpha * b`` for floating-point tensors; the others (counters) are taken from ``b``."""
    if state_a.keys() != state_b.keys():
        raise SystemExit("the two models have different tensors: blend models of one architecture only")
    return {k: torch.lerp(state_a[k], state_b[k], alpha) if state_a[k].is_floating_point() else state_b[k]
            for k in state_a}


def depth_errors(model, samples: list) -> tuple[float, float]:
    """Abs Rel of the depth as returned and after per-image median scaling (``depth_metrics``, as ``wfb evaluate``
    scores Tables 3 and 3b: per image, then averaged over the images)."""
    pred, true, valid = [], [], []
    for b in samples:
        with torch.no_grad():
            pred.append(model.predict(b["blurred"], b["K"])["depth"])
        true.append(b["depth"])
        valid.append(b["valid_depth"])
    pred, true, valid = torch.cat(pred), torch.cat(true), torch.cat(valid)
    return (depth_metrics(pred, true, valid)["abs_rel"],
            depth_metrics(pred, true, valid, align=True)["abs_rel"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="+", help="datasets built by wfb make-dataset, at the model's size")
    ap.add_argument("--to", required=True, help="the fine-tuned model (alpha 1)")
    ap.add_argument("--from", dest="start", default=None, help="the model it was tuned from (alpha 0; default: shipped)")
    ap.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma-separated blend weights of --to")
    ap.add_argument("--num", type=int, default=60, help="test samples per dataset, spread evenly (default 60)")
    args = ap.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    model = load_model(args.start or shipped_model())[0]
    state_a = {k: v.clone() for k, v in model.state_dict().items()}
    state_b = load_model(args.to)[0].state_dict()
    data = {d: list(spread_samples(d, args.num)[1]) for d in args.data}
    print(machine(), "\n")
    rows = []
    for alpha in alphas:
        model.load_state_dict(blend(state_a, state_b, alpha))
        model.eval()
        cells = [f"{raw:.3f} ({shape:.3f})" for raw, shape in (depth_errors(model, s) for s in data.values())]
        rows.append([f"{alpha:g}", *cells])
    print(f"from {args.start or 'shipped'} (alpha 0) to {args.to} (alpha 1); Abs Rel as returned (after per-image "
          "median scaling)\n")
    print(table(["alpha", *(d.name for d in data)], rows))


if __name__ == "__main__":
    main()
