#!/usr/bin/env bash
# A screen of CD variants (benchmarks/cd_screen.txt) trained side by side on one GPU, one process
# each, then scored with the demo FD (ablate.py). GPU kernels are not bit-reproducible and the
# processes share the GPU, so the screen ranks variants; a winner is confirmed on the CPU.
# Each variant's log, last metrics line and 1- / 4-step grids come back in $OUT/screen.tgz.
#
#   OUT=runs/device TEACHER=runs/abl/flow/checkpoints/step_0004000.safetensors bash benchmarks/device_screen.sh
set -u
OUT=${OUT:-runs/device}
TEACHER=${TEACHER:-runs/abl/flow/checkpoints/step_0004000.safetensors}
SCREEN=${SCREEN:-runs/screen}
DEVICE=${DEVICE:-cuda:0}
LIST=${LIST:-benchmarks/cd_screen.txt}
mkdir -p "$OUT" "$SCREEN/logs"
source "$(dirname "$0")/device_env.sh"
export OMP_NUM_THREADS=1  # one core per variant
pids=()
while read -r name args; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    # shellcheck disable=SC2086
    timeout "${SCREEN_LIMIT:-540}" $PY benchmarks/ablate.py "$name" method=cd teacher="$TEACHER" $args --device "$DEVICE" \
        ${SCREEN_EXTRA:-} --out "$SCREEN" --classifiers 0,1,2 >"$SCREEN/logs/$name.log" 2>&1 &
    pids+=($!)
done <"$LIST"
(while sleep 15; do cp "$SCREEN/results.jsonl" "$OUT/" 2>/dev/null; done) &  # a cut-off call still returns the finished
copier=$!
wait "${pids[@]}"
kill $copier
cp "$SCREEN/results.jsonl" "$OUT/" 2>/dev/null
for run in "$SCREEN"/*/; do
    [[ $run == */logs/ ]] && continue
    tail -n 1 "$run/metrics.jsonl" >"$SCREEN/logs/$(basename "$run").last" 2>/dev/null
done
tar czf "$OUT/screen.tgz" -C "$SCREEN" logs $(cd "$SCREEN" && ls -d */eval_1steps.png */eval_4steps.png 2>/dev/null)
grep -h "step " "$SCREEN"/logs/*.log
