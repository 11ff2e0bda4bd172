#!/usr/bin/env bash
# The main job on a fresh machine: train briefly on the bundled test/ images, then stylise every
# test/content image with every test/style image using those checkpoints.
#
#   bash scripts/demo.sh [VGG_PATH]
#
# Without VGG_PATH it uses the photo-mode encoder that ships in models/ (the commands' default).
# Checkpoints go to experiments/demo/, TensorBoard logs to experiments/demo/logs/, results to
# output/demo/. Environment overrides:
#   PYTHON       interpreter (default: python, else python3)
#   DEVICE       cpu, cuda, ... (default: cuda when present)
#   DEMO_ITERS   training iterations (default 30)
#   DEMO_CROP    training crop in pixels (default 64)
#   DEMO_SIZE    shorter side of the stylised images (default 256)
#   DEMO_SAVE_DIR, DEMO_OUTPUT   the two folders (relative to the repository root)
set -euo pipefail

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
ITERS="${DEMO_ITERS:-30}"
CROP="${DEMO_CROP:-64}"
SIZE="${DEMO_SIZE:-256}"
DEVICE_FLAG=()
if [ -n "${DEVICE:-}" ]; then DEVICE_FLAG=(--device "$DEVICE"); fi
VGG_FLAG=()

if [ $# -gt 1 ]; then
    echo "usage: bash scripts/demo.sh [VGG_PATH]" >&2
    exit 2
fi
if [ $# -eq 1 ]; then
    VGG_FLAG=(--vgg "$("$PYTHON" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$1")")
fi
cd "$(dirname "$0")/.."

SAVE_DIR="${DEMO_SAVE_DIR:-experiments/demo}"
OUTPUT="${DEMO_OUTPUT:-output/demo}"
echo "== training for $ITERS iterations on test/content and test/style -> $SAVE_DIR"
"$PYTHON" train.py --content_dir test/content --style_dir test/style ${VGG_FLAG[@]+"${VGG_FLAG[@]}"} \
    --save_dir "$SAVE_DIR" --log_dir "$SAVE_DIR/logs" --max_iter "$ITERS" --save_model_interval "$ITERS" \
    --batch_size 2 --image_size "$((CROP + CROP / 4))" --crop_size "$CROP" --n_threads 0 \
    ${DEVICE_FLAG[@]+"${DEVICE_FLAG[@]}"}

echo "== stylising test/content with test/style -> $OUTPUT"
"$PYTHON" test.py --content_dir test/content --style_dir test/style ${VGG_FLAG[@]+"${VGG_FLAG[@]}"} \
    --decoder "$SAVE_DIR/decoder_iter_$ITERS.pth.tar" --LCT "$SAVE_DIR/lct_iter_$ITERS.pth.tar" \
    --content_size "$SIZE" --style_size "$SIZE" --output "$OUTPUT" ${DEVICE_FLAG[@]+"${DEVICE_FLAG[@]}"}
echo "== done: results in $OUTPUT/, checkpoints and grid_iter_$ITERS.png in $SAVE_DIR/"
