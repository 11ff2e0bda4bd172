#!/usr/bin/env bash
# The GPU check of the performance issue, in one go (about 8 minutes on one H100/H200): the
# training step (batch 8, 256², fp32 and bf16, without and with torch.compile, WCE's share), then
# inference at 1024² and 4096² with a 512² style (fp32 and bf16, whole and in 2048-px tiles),
# with the shipped photo model's architecture and encoder. Each table goes to $OUT (default
# output/gpu_check) and to stdout.
#   bash scripts/gpu_check.sh            # or: OUT=/some/folder bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
common=(--device cuda --large_photos 0)
python scripts/benchmark.py "${common[@]}" --skip inference,loader \
    --batch_size 8 --crop_size 256 --train_precisions fp32,bf16 | tee "$OUT/train_eager.md"
python scripts/benchmark.py "${common[@]}" --skip inference,loader,share --compile \
    --batch_size 8 --crop_size 256 --train_precisions fp32,bf16 | tee "$OUT/train_compiled.md"
python scripts/benchmark.py "${common[@]}" --skip train,share,loader \
    --sizes 1024,4096 --style_size 512 --infer_precisions fp32,bf16 | tee "$OUT/inference_whole.md"
python scripts/benchmark.py "${common[@]}" --skip train,share,loader --tile_size 2048 \
    --sizes 4096 --style_size 512 --infer_precisions fp32,bf16 | tee "$OUT/inference_tiled.md"
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
    torchrun --standalone --nproc_per_node=2 train.py --content_dir test/content --style_dir test/style \
        --max_iter 20 --batch_size 2 --crop_size 128 --image_size 256 --save_model_interval 20 \
        --save_dir "$OUT/nccl_run" --log_dir "$OUT/nccl_run/logs" | tail -3 | tee "$OUT/nccl.txt"
else
    echo "one GPU: the 2-process NCCL run needs two" | tee "$OUT/nccl.txt"
fi
