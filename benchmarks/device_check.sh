#!/usr/bin/env bash
# The GPU checks, sized for a short device lease (~5 minutes): the CUDA tests (training in
# fp32 / bf16 / fp16, autocast, resume, CD, seeded sampling), mixed-precision throughput and
# a profile of the training step (kernel time against wall time).
# Each result is written to $OUT as it comes, so a cut-off run still returns what it finished.
#
#   OUT=runs/device bash benchmarks/device_check.sh
set -u
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
source "$(dirname "$0")/device_env.sh"
nvidia-smi -L | tee "$OUT/gpu.txt"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/cmcore/test_cuda.py 2>&1 | tee "$OUT/pytest_cuda.log"
timeout 90 $PY -m benchmarks.amp --model small --batch-size 128 --steps 90 --rounds 2 2>&1 | tee "$OUT/amp.log"
timeout 150 $PY -m benchmarks.gpu_profile --steps 30 2>&1 | grep -v -i warn | tee "$OUT/profile.log"
