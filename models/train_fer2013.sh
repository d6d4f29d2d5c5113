#!/usr/bin/env bash
# Train one shipped FER2013 model with the toolkit's `caffe train`, from the data to snapshots.
#   models/train_fer2013.sh MODEL [WORK]      MODEL: see `python -m sse.fer2013 nets --help`
# Builds the LMDBs once (FER2013 from $FER2013, default ../shared/data/fer2013), writes the nets
# under WORK/MODEL (default work/fer2013), and trains each stage of the model's schedule in turn
# (`python -m sse.fer2013 stages MODEL`: a stage resumes from the last snapshot of the one before
# with a longer max_iter) with one torch thread (OMP_NUM_THREADS to change), logging to
# WORK/MODEL/train.log as well. Run again, it resumes from the newest snapshot.
set -euo pipefail
MODEL="$1"
WORK="${2:-work/fer2013}"
FER2013="${FER2013:-../shared/data/fer2013}"
python3 -m sse.fer2013 --data "$FER2013" --work "$WORK" prepare >/dev/null
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" CAFFE_DATA_WORKERS="${CAFFE_DATA_WORKERS:-0}"
STAGE=0
for MAX_ITER in $(python3 -m sse.fer2013 stages "$MODEL"); do
  DONE="$(ls "$WORK/$MODEL" 2>/dev/null | sed -n 's/^snap_iter_\([0-9]*\)\.solverstate$/\1/p' | sort -n | tail -1 || true)"
  if [ "${DONE:-0}" -lt "$MAX_ITER" ]; then
    python3 -m sse.fer2013 --work "$WORK" nets "$MODEL" --stage "$STAGE" >/dev/null
    SOLVER="$(ls "$WORK/$MODEL"/SSE-*/*_train_solver.prototxt)"
    RESUME=()
    [ -n "$DONE" ] && RESUME=(--snapshot="$WORK/$MODEL/snap_iter_$DONE.solverstate")
    caffe train --solver="$SOLVER" "${RESUME[@]}" --no_progress 2>&1 | tee -a "$WORK/$MODEL/train.log"
  fi
  STAGE=$((STAGE + 1))
done
