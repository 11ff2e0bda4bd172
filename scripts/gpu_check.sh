#!/usr/bin/env bash
# The GPU check of the performance issue, in one go (at most 8 minutes on one H100/H200), with
# the shipped photo model's architecture and encoder; each stage has its own time limit, so a slow
# compilation cannot hide the stages after it, and each prints its tables as they are measured.
# Tables go to stdout and to $OUT (default output/gpu_check):
#   1. the training step at batch 8, 256² (WCE and CCPL, fp32 and bf16), its parts, top kernels;
#   2. WCE's share of a step against the per-anchor reference, and the cost of the per-step
#      non-finite check (back-to-back steps with and without it);
#   3. inference at 1024² and 4096² with a 512² style, whole (fp32, bf16), with top kernels;
#   4. inference at 4096² in 2048-px tiles;
#   5. inference under torch.compile (bf16);
#   6. the training step under torch.compile (WCE, bf16);
#   7. a 2-process NCCL run of train.py when the machine has two GPUs.
#   bash scripts/gpu_check.sh            # or: OUT=/some/folder bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_check}
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/device.txt"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"
stage() {  # stage SECONDS FILE ARGS...: one benchmark run under a time limit
    local limit=$1 file=$2; shift 2
    echo "=== $file (limit ${limit}s): $*"
    timeout "$limit" "$PYTHON" scripts/benchmark.py --device cuda --large_photos 0 "$@" 2>&1 | tee "$OUT/$file"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "stage $file ended with exit status $rc" | tee -a "$OUT/$file"
}
stage 110 training.md --skip share,sync,inference,loader --contrastive wce,ccpl --batch_size 8 --crop_size 256 \
    --train_precisions fp32,bf16 --repeats 10 --profile 12
stage 60 share_and_sync.md --skip train,inference,loader --batch_size 8 --crop_size 256 --train_precisions fp32,bf16 \
    --repeats 10
stage 60 inference.md --skip train,share,sync,loader --tile_size 4096 --sizes 1024,4096 --style_size 512 \
    --infer_precisions fp32,bf16 --repeats 10 --profile 12
stage 40 inference_tiled.md --skip train,share,sync,loader --tile_size 2048 --sizes 4096 --style_size 512 \
    --infer_precisions fp32,bf16 --repeats 10
stage 80 inference_compiled.md --compile --skip train,share,sync,loader --tile_size 4096 --sizes 1024,4096 \
    --style_size 512 --infer_precisions bf16 --repeats 10
stage 120 training_compiled.md --compile --skip inference,share,sync,loader --contrastive wce \
    --batch_size 8 --crop_size 256 --train_precisions bf16 --repeats 10
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    timeout 60 torchrun --standalone --nproc_per_node=2 train.py --content_dir test/content --style_dir test/style \
        --max_iter 20 --batch_size 2 --crop_size 128 --image_size 256 --save_model_interval 20 \
        --save_dir "$OUT/nccl_run" --log_dir "$OUT/nccl_run/logs" 2>&1 | tail -3 | tee "$OUT/nccl.txt"
else
    echo "one GPU: the 2-process NCCL run needs two" | tee "$OUT/nccl.txt"
fi
