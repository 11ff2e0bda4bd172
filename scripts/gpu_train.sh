#!/usr/bin/env bash
# One GPU session's training of the shipped photo model: about 9 minutes on one H100/H200 at
# batch 8, 256² crops, bf16, starting from the shipped model (decoder and LCT) with a fresh
# optimiser, or continuing the state an earlier session brought back. It writes to $OUT (default
# output/gpu_train) at most 8 files of at most 15 MiB each, so that a GPU machine can return them:
#   decoder_iter_N.pth.tar, lct_iter_N.pth.tar, ema/decoder_iter_N.pth.tar, ema/lct_iter_N.pth.tar,
#   the training state in parts (scripts/state_parts.py join puts it back together), iter_N.json
#   and train.log, whose last lines give the time an iteration took.
#
# The training photos come from a folder of the repository that git ignores (a GPU machine sees
# the repository alone): fill it first, e.g. cp ../shared/data/bsds500/{train,val}/*.jpg
# datasets/photos_train/. A missing tensorboardX is installed from the wheels in .whl/ if any.
#
#   bash scripts/gpu_train.sh                           # from the shipped model
#   RESUME=runs/gpu_state bash scripts/gpu_train.sh     # continue: a folder holding the state's parts
# Every setting below can be overridden from the environment (the tests run it on the CPU in seconds).
# RUN (the run folder) and OUT must be new or empty, so that what is handed back is this run's.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_train}
DATA=${DATA:-datasets/photos_train}
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-bf16}
BATCH=${BATCH:-8}
IMAGE=${IMAGE:-320}
CROP=${CROP:-256}
ITERS=${ITERS:-11000}          # about 9 minutes at the measured 46 ms a step
MINUTES=${MINUTES:-9}          # and a time limit, in case the step is slower
LR=${LR:-1e-4}
WARMUP=${WARMUP:-100}          # iterations of learning-rate warm-up, fewer than ITERS
STYLE_WEIGHT=${STYLE_WEIGHT:-20}  # the shipped model's last stage's (experiments/photo/README.md)
FINISH_RADIUS=${FINISH_RADIUS:-6}  # the losses see the guided-filter-finished result, as inference gives it
STRUCTURE_WEIGHT=${STRUCTURE_WEIGHT:-100}  # its last stage's, with the terms below
STRUCTURE_TERMS=${STRUCTURE_TERMS:-contrast_structure}
WORKERS=${WORKERS:-8}
EXTRA=${EXTRA:-}               # more train.py flags, e.g. "--identity_weight 50"
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
RUN=${RUN:-output/gpu_run}
export PYTHONUNBUFFERED=1

[ -d "$DATA" ] || { echo "error: no training photos in $DATA (copy them there first)" >&2; exit 2; }
for folder in "$RUN" "$OUT"; do   # the state handed back must be this run's own: no earlier run's files
    if [ -d "$folder" ] && [ -n "$(ls -A "$folder")" ]; then
        echo "error: $folder holds an earlier run's files: give each run an empty RUN and OUT" >&2; exit 2
    fi
done
if ! "$PYTHON" -c "import tensorboardX" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "error: tensorboardX is missing and .whl/ holds no wheels" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$OUT" "$RUN"
start=()
if [ -n "${RESUME:-}" ]; then
    state="$RUN/$(ls "$RESUME" | sed -n 's/\.part1of[0-9]*\.pth$/.pth/p' | head -n 1)"
    "$PYTHON" scripts/state_parts.py join "$RESUME" "$state"
    start=(--resume "$state")
else
    read -r decoder transform < <("$PYTHON" -c "from glfa.runfolder import shipped_model; print(*shipped_model())")
    start=(--init_decoder "$decoder" --init_transform "$transform")
fi
# shellcheck disable=SC2086  # EXTRA is a list of flags
"$PYTHON" train.py --content_dir "$DATA" --style_dir "$DATA" "${start[@]}" --device "$DEVICE" --amp "$AMP" \
    --batch_size "$BATCH" --image_size "$IMAGE" --crop_size "$CROP" --lr "$LR" --style_weight "$STYLE_WEIGHT" \
    --structure_weight "$STRUCTURE_WEIGHT" --structure_terms "$STRUCTURE_TERMS" --finish_radius "$FINISH_RADIUS" \
    --lr_schedule cosine \
    --min_lr 1e-6 --warmup_iters "$WARMUP" --ema 0.999 --max_iter "$ITERS" --time_limit "$MINUTES" \
    --save_model_interval "$ITERS" --keep_last 1 --n_threads "$WORKERS" --seed 0 \
    --save_dir "$RUN" --log_dir "$RUN/logs" $EXTRA 2>&1 | tr '\r' '\n' | grep -v "^train:" | tee "$OUT/train.log"
last=$(ls "$RUN" | sed -n 's/^training_state_iter_\([0-9]*\)\.pth$/\1/p' | sort -n | tail -n 1)
cp "$RUN/decoder_iter_$last.pth.tar" "$RUN/lct_iter_$last.pth.tar" "$RUN/iter_$last.json" "$OUT/"
mkdir -p "$OUT/ema"
cp "$RUN/ema/decoder_iter_$last.pth.tar" "$RUN/ema/lct_iter_$last.pth.tar" "$OUT/ema/"
"$PYTHON" scripts/state_parts.py split "$RUN/training_state_iter_$last.pth" "$OUT" --max_mib 15 | tee -a "$OUT/train.log"
