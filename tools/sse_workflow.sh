# Shared by train_SSE_*.sh and test_SSE_*.sh (sourced, not run). The caller sets BACKBONE
# (holonet | densenet | resnet) and VARIANT_DEFAULT (the released form).
#
# Environment overrides (defaults in brackets):
#   VARIANT       form: original, 3conv-s+eltwise, 3conv-s+concat, 4conv-c+eltwise, 4conv-c+concat [released]
#   WORK          where generated nets, logs, snapshots and features go [work/<backbone>]
#   TRAIN_SOURCE  training LMDB [train_lmdb]        VAL_SOURCE  validation LMDB [val_lmdb]
#   MEAN_FILE     mean .binaryproto [as released]   MEAN_VALUE  comma-separated means instead
#   TEST_LIST     ImageData list of the test frames ("path label", label -1 if unknown) [test_file_list.txt]
#   TEST_ROOT     folder the TEST_LIST paths are relative to [none]
#   INPUT_SIZE    input size; test images are resized to it [as released]
#   CHANNELS      1 gray / 3 colour [as released]
#   TRAIN_BATCH, VAL_BATCH, TEST_BATCH               batch sizes [as released]
#   ITERATIONS    max_iter of the solver [as released]
#   TEST_ITER, TEST_INTERVAL   validation batches per test and iterations between tests [as released]
#   GPU           device ids for caffe train, e.g. 0 or 0,1 or all [none: CPU]
#   WEIGHTS       pretrained .caffemodel to start training from [none]
#   MODEL         trained .caffemodel to test [the last snapshot under WORK]
#   CAFFE_TOOLS   folder with a real Caffe build's tools (caffe, extract_features.bin) to use
#                 instead of this toolkit's [unset]
set -euo pipefail

VARIANT="${VARIANT:-$VARIANT_DEFAULT}"
WORK="${WORK:-work/$BACKBONE}"
SLUG="${VARIANT//+/_}"

sse_caffe() {
    if [ -n "${CAFFE_TOOLS:-}" ]; then "$CAFFE_TOOLS/caffe" "$@"; else caffe "$@"; fi
}

sse_extract_features() {
    if [ -n "${CAFFE_TOOLS:-}" ]; then "$CAFFE_TOOLS/extract_features.bin" "$@"; else extract_features "$@"; fi
}

# Write the nets and solver of this form for the data given in the environment; prints nothing.
sse_generate() {
    local args=(--backbone "$BACKBONE" --variant "$VARIANT" --out "$WORK/nets" --solver-mode CPU)
    [ -n "${GPU:-}" ] && args[${#args[@]}-1]=GPU
    [ -n "${TRAIN_SOURCE:-}" ] && args+=(--train-source "$TRAIN_SOURCE")
    [ -n "${VAL_SOURCE:-}" ] && args+=(--val-source "$VAL_SOURCE")
    [ -n "${MEAN_FILE:-}" ] && args+=(--mean-file "$MEAN_FILE")
    [ -n "${MEAN_VALUE:-}" ] && args+=(--mean-value "$MEAN_VALUE")
    [ -n "${TEST_LIST:-}" ] && args+=(--test-list "$TEST_LIST")
    [ -n "${TEST_ROOT:-}" ] && args+=(--test-root "$TEST_ROOT")
    [ -n "${INPUT_SIZE:-}" ] && args+=(--input-size "$INPUT_SIZE")
    [ -n "${CHANNELS:-}" ] && args+=(--channels "$CHANNELS")
    [ -n "${TRAIN_BATCH:-}" ] && args+=(--train-batch "$TRAIN_BATCH")
    [ -n "${VAL_BATCH:-}" ] && args+=(--val-batch "$VAL_BATCH")
    [ -n "${TEST_BATCH:-}" ] && args+=(--test-batch "$TEST_BATCH")
    [ -n "${ITERATIONS:-}" ] && args+=(--max-iter "$ITERATIONS")
    sse-gen-nets "${args[@]}" >/dev/null
    NET_DIR="$(ls -d "$WORK"/nets/SSE-*)"
    SOLVER="$(ls "$NET_DIR"/*_train_solver.prototxt)"
    TRAIN_NET="$(ls "$NET_DIR"/*_train.prototxt)"
    TEST_NET="$(ls "$NET_DIR"/*_test.prototxt)"
    mkdir -p "$WORK/snapshots"
    # Snapshots go under WORK, whatever the released prefix says.
    local prefix="$WORK/snapshots/${BACKBONE}_${SLUG}"
    sed -i "s#^snapshot_prefix: .*#snapshot_prefix: \"$prefix\"#" "$SOLVER"
    SNAPSHOT_PREFIX="$prefix"
    [ -n "${TEST_ITER:-}" ] && sed -i "s#^test_iter: .*#test_iter: $TEST_ITER#" "$SOLVER"
    [ -n "${TEST_INTERVAL:-}" ] && sed -i "s#^test_interval: .*#test_interval: $TEST_INTERVAL#" "$SOLVER"
    return 0
}

sse_train() {
    sse_generate
    local args=(train "--solver=$SOLVER")
    [ -n "${GPU:-}" ] && args+=("--gpu=$GPU")
    [ -n "${WEIGHTS:-}" ] && args+=("--weights=$WEIGHTS")
    echo "caffe ${args[*]}  (log: $WORK/train.log)" >&2
    sse_caffe "${args[@]}" 2>&1 | tee "$WORK/train.log"
    caffe-plot-log "$WORK/train.log" -o "$WORK/training_curves.png" >/dev/null || true
}

sse_test() {
    sse_generate
    local model="${MODEL:-}"
    if [ -z "$model" ]; then
        model="$(ls -t "$SNAPSHOT_PREFIX"_iter_*.caffemodel 2>/dev/null | head -n 1 || true)"
    fi
    [ -n "$model" ] || { echo "no MODEL given and no snapshot under $WORK/snapshots" >&2; exit 1; }
    local list="${TEST_LIST:-test_file_list.txt}"
    # Extraction form of the test net: no layer reads the label (crops of unlabelled videos carry -1),
    # and ImageData resizes every image to the net's input size (INPUT_SIZE, or the released one).
    local size="${INPUT_SIZE:-$(sed -n 's/^ *dim: *\([0-9]*\).*/\1/p' "$(ls "$NET_DIR"/*_deploy.prototxt)" | tail -n 1)}"
    local net="$WORK/nets/extract.prototxt"
    sse-extract-net "$TEST_NET" "$net" --size "$size"
    local frames batch batches
    frames="$(grep -c . "$list")"
    batch="$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$net" | head -n 1)"
    batches=$(( (frames + batch - 1) / batch ))
    local db="$WORK/features_prob"
    rm -rf "$db"
    local device=(CPU)
    [ -n "${GPU:-}" ] && device=(GPU "${GPU%%,*}")
    sse_extract_features "$model" "$net" prob "$db" "$batches" leveldb "${device[@]}"
    # The last batch wraps around to the first frames; reading exactly `frames` rows drops them, so
    # row i of features.mat is line i of the list (and of frames.csv).
    leveldb2mat "$db" 1 "$frames" 7 "$WORK/features.mat"
    echo "$frames frames -> $WORK/features.mat (one row per line of $list)" >&2
}
