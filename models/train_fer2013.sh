#!/usr/bin/env bash
# Train one shipped FER2013 model with the toolkit's `caffe train`, from the data to snapshots.
#   models/train_fer2013.sh MODEL [WORK]      MODEL: see `python -m sse.fer2013 nets --help`
# Builds the LMDBs once (FER2013 from $FER2013, default ../shared/data/fer2013), writes the nets
# and solver under WORK/MODEL (default work/fer2013), trains with one torch thread
# (OMP_NUM_THREADS to change), logs to WORK/MODEL/train.log as well, and resumes from the newest
# snapshot when run again.
set -euo pipefail
MODEL="$1"
WORK="${2:-work/fer2013}"
FER2013="${FER2013:-../shared/data/fer2013}"
python3 -m sse.fer2013 --data "$FER2013" --work "$WORK" prepare >/dev/null
python3 -m sse.fer2013 --work "$WORK" nets "$MODEL" >/dev/null
SOLVER="$(ls "$WORK/$MODEL"/SSE-*/*_train_solver.prototxt)"
RESUME=()
LATEST="$(ls "$WORK/$MODEL"/snap_iter_*.solverstate 2>/dev/null | sort -t_ -k3 -n | tail -1 || true)"
[ -n "$LATEST" ] && RESUME=(--snapshot="$LATEST")
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" CAFFE_DATA_WORKERS="${CAFFE_DATA_WORKERS:-0}"
caffe train --solver="$SOLVER" "${RESUME[@]}" --no_progress 2>&1 | tee -a "$WORK/$MODEL/train.log"
