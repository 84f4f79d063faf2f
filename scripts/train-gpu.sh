#!/usr/bin/env bash
# One prepared call on a lent GPU machine (no network, 16 cores, results back through $OUT in files of <= 16 MiB):
# install the carried wheels (kornia is not in the machine's image), measure the stream, train two models side by
# side with `wfb train-model` within MINUTES, and pack what came out of them into $OUT.
#
#   bash scripts/train-gpu.sh MINUTES POOL_DIR...      (carry .whl and the pool folders; see docs/training.md)
#
# Run A is the compact recipe; run B the same with a wider deblurring U-Net. Both see the procedural frames and
# every POOL_DIR (real RGB-D frames, weighted x2). Back here: OUT/bench.txt, OUT/log-A.txt, OUT/log-B.txt and
# OUT/runs.tar.part-* (cat them | tar -x gives A/ and B/, each with eval.json, recipe.yaml and model/).
set -uo pipefail
MINUTES=${1:?minutes}; shift
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/bench.txt"
POOLS=""
for p in "$@"; do POOLS="$POOLS,$p*2"; done
wfb() { python3 -m worldfromblur.cli.main "$@"; }
(cd benchmarks && timeout 120 python3 bench_stream.py --devices cuda --batch 8 32 --steps 5 --pool synthetic:64 2>&1 | tail -6) | tee -a "$OUT/bench.txt"
COMMON=(--minutes "$MINUTES" --quiet "data.pool=[synthetic:${SYNTH:-3000}$POOLS]" batch_size=32 optim.lr=5e-4
        optim.warmup_steps=200 ckpt_every=1000 image_every=0 log_every=50)
wfb train-model compact --out /tmp/runs/A "${COMMON[@]}" > "$OUT/log-A.txt" 2>&1 &
A=$!
wfb train-model compact --out /tmp/runs/B "${COMMON[@]}" "model.deblur_widths=[48,96,192,384]" > "$OUT/log-B.txt" 2>&1 &
B=$!
wait $A; echo "A exit $?" >> "$OUT/log-A.txt"
wait $B; echo "B exit $?" >> "$OUT/log-B.txt"
rm -rf /tmp/runs/*/stages/*/checkpoints/.tmp-*
(cd /tmp/runs && tar -cf - */eval.json */recipe.yaml */model */stages/*/config.yaml */stages/*/tb 2>/dev/null) \
  | split -b 15000000 - "$OUT/runs.tar.part-"
ls -la "$OUT"
