#!/usr/bin/env bash
# The GPU checks, sized for a short device lease (~5 minutes): the CUDA tests (training in
# fp32 / bf16 / fp16, autocast, resume, CD, seeded sampling), mixed-precision throughput and
# a profile of the training step (kernel time against wall time), and one NCCL run under torchrun.
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
# torchrun with one process, a process group forced (CMCORE_DDP=1: NCCL and DDP even alone): 30 steps, then a resume
rm -rf runs/device-ddp1; CMCORE_DDP=1 timeout 120 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m cmcore train --data demo --out runs/device-ddp1 --resolution 16 --batch-size 64 --max-steps 30 --max-minutes 0 --device cuda --quiet 2>&1 | tail -5 | tee "$OUT/torchrun_nccl.log"; CMCORE_DDP=1 timeout 90 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m cmcore train --out runs/device-ddp1 --resume --max-steps 40 --quiet 2>&1 | tail -5 | tee -a "$OUT/torchrun_nccl.log"
