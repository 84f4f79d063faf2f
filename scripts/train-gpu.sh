#!/usr/bin/env bash
# One prepared call on a lent GPU machine (no network, 16 cores; results come back only through $OUT, in files of
# at most 16 MiB, at most 8 of them): install the carried wheels (kornia is not in the machine's image), time the
# training step change by change (BENCH=ladder, the default; BENCH=stream: the stream alone; BENCH=0: nothing), train
# with `wfb train-model` within MINUTES at the step's speed settings (SPEED), score the result beside the shipped
# model on 240 samples of procedural rooms no pool contains and on every held-out room dataset carried in .evaldata/
# (evaluate.rooms; docs/training.md), and pack the run into $OUT whatever happens. Rotation is judged there by the
# network's own trajectory (evaluate.refine=0: refining every sample would take minutes of the window); back on the
# CPU, `wfb train-model --out run --reevaluate evaluate.refine=15 'evaluate.videos=[GOPRO_FRAMES]'` judges it again
# after refinement, as the gate does by default, and on real hand-held blur (docs/training.md).
# Ship the model only where that eval.json says "ship": {"ship": true}. The recipe (RECIPE, default compact)
# continues from the shipped weights.
#
#   bash scripts/train-gpu.sh MINUTES [key=value ...]
#
# e.g. with the real pools carried in .pools (see docs/training.md, "Training on a lent GPU"):
#   bash scripts/train-gpu.sh 7.5 'data.pool=[synthetic:3000,.pools/7scenes-train*2,.pools/tum-cabinet*2]'
#
# Back here: OUT/bench.txt, OUT/log.txt and OUT/run.tar.part-* (`cat run.tar.part-* | tar -x` gives run/ with
# eval.json, recipe.yaml, model/ and the stage's config and TensorBoard log; if the run did not finish, the stage's
# newest checkpoint weights instead of model/). The time budget is calibrated on the first steps: two runs may share
# the GPU (an equal-budget comparison) only when both start together, each with its own RUN folder and OUT, e.g.
#   BENCH=0 RUN=/tmp/a OUT=$OUT/a bash scripts/train-gpu.sh 7 ... & BENCH=0 RUN=/tmp/b OUT=$OUT/b bash ... & wait
set -uo pipefail
MINUTES=${1:?minutes}; shift
START=$(date +%s)
CALL=${CALL:-580}  # seconds the whole call may take (the device allows 600 a command): the ladder and the training
left() { echo $(( CALL - ($(date +%s) - START) )); }  # are cut to fit, so that the run is always packed into $OUT
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUN=${RUN:-/tmp/run}
if ls .whl/*.whl >/dev/null 2>&1; then
  flock /tmp/site.lock sh -c '[ -d /tmp/site/kornia ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl' || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/bench.txt" 2>&1
GRACE=90 PACK=30  # seconds for a late evaluation past the budget, and for packing the run
TRAIN_S=$(python3 -c "print(int(float('$MINUTES') * 60 + $GRACE + $PACK))")  # what the ladder must leave
bench_cap() { local cap=$(( $(left) - TRAIN_S )); [ "$cap" -gt "$1" ] && cap=$1; echo "$cap"; }
case "${BENCH:-ladder}" in
  ladder)  # the renderer and the host's rooms, then the training step change by change (issue 25's table; rows
    # print as they finish, so a step ladder cut short by the call's time still reports its first rungs)
    cap=$(bench_cap 90); [ "$cap" -gt 20 ] && (timeout "$cap" python3 -m benchmarks.bench_render --devices cuda \
      --sizes 160x120 --batch 32 128 --workers 0 8 --room-batch 128 --room-steps 8 2>&1 | tail -12) >> "$OUT/bench.txt"
    cap=$(bench_cap 300); [ "$cap" -gt 60 ] && (timeout "$cap" python3 -m benchmarks.bench_step --device cuda --steps 20 \
      --warmup 8 --models rooms nafnet --profile today batch-128 2>&1 | grep -v "^W[0-9]" | tail -80) >> "$OUT/bench.txt"
    echo "ladder ended $(( $(date +%s) - START )) s into the call" >> "$OUT/bench.txt" ;;
  stream)
    cap=$(bench_cap 120); [ "$cap" -gt 20 ] && (timeout "$cap" python3 -m benchmarks.bench_stream --devices cuda --batch 8 32 \
      --steps 5 --pool synthetic:64 2>&1 | tail -6) >> "$OUT/bench.txt" ;;
esac
# the step's speed settings (benchmarks/bench_step.py); later key=value arguments override them
# (room_workers: processes that draw the new rooms of data.stream.rooms ahead of their step; no effect without it)
SPEED=${SPEED:-"batch_size=128 optim.lr_batch=32 channels_last=true compile=default data.stream.draws=device data.stream.room_workers=8"}
# the held-out rooms carried in .evaldata/ (built datasets; each scored beside the shipped model after training)
ROOMS=$(ls -d .evaldata/*/ 2>/dev/null | sed 's:/$::' | paste -sd, -)
if [ -n "$ROOMS" ] && [ "${RECIPE:-compact}" = compact ]; then set -- "evaluate.rooms=[$ROOMS]" "$@"; fi
# the budget plus room for a late evaluation, within what is left of the call (the budget cut to fit, if need be)
read -r MINUTES LIMIT < <(python3 -c "m = max(min(float('$MINUTES'), ($(left) - $GRACE - $PACK) / 60), 0.5)
print(round(m, 2), int(m * 60 + $GRACE))")
echo "training budget $MINUTES min, $(( $(date +%s) - START )) s into the call" > "$OUT/log.txt"
timeout -k 10 "$LIMIT" python3 -m worldfromblur.cli.main train-model "${RECIPE:-compact}" --out "$RUN" --minutes "$MINUTES" \
  --quiet optim.lr=5e-4 optim.warmup_steps=200 ckpt_every=500 image_every=0 log_every=50 evaluate.unseen_rooms=240 \
  evaluate.refine=0 $SPEED "$@" >> "$OUT/log.txt" 2>&1
echo "train-model exit $?" >> "$OUT/log.txt"
cd "$(dirname "$RUN")" && run=$(basename "$RUN") && rm -rf "$run"/stages/*/checkpoints/.tmp-*
if [ -f "$run"/model/model.safetensors ]; then
  KEEP=("$run"/eval.json "$run"/recipe.yaml "$run"/model "$run"/stages/*/config.yaml "$run"/stages/*/tb)
else
  KEEP=("$run"/recipe.yaml "$run"/stages/*/config.yaml "$run"/stages/*/tb)
  for s in "$run"/stages/*/checkpoints; do KEEP+=("$(ls -d "$s"/step-* | tail -1)/model.safetensors" "$(ls -d "$s"/step-* | tail -1)/config.yaml"); done
fi
tar -cf - "${KEEP[@]}" 2>/dev/null | split -b 15000000 - "$OUT/run.tar.part-"
ls -la "$OUT"
