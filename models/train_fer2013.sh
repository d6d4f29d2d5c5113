#!/usr/bin/env bash
# Train one shipped FER2013 model with the toolkit's `caffe train`, from the data to snapshots.
#   models/train_fer2013.sh MODEL [WORK]      MODEL: see `python -m sse.fer2013 nets --help`
# Builds the LMDBs once (FER2013 from $FER2013, default ../shared/data/fer2013), writes the nets
# under WORK/MODEL (default work/fer2013), and trains each stage of the model's schedule in turn
# (`python -m sse.fer2013 stages MODEL`: a stage resumes from the last snapshot of the one before
# with a longer max_iter; `next MODEL` writes the solver of the stage to train and names the state
# to resume) with one torch thread (OMP_NUM_THREADS to change), logging to WORK/MODEL/train.log as
# well. Run again, it resumes from the newest snapshot. Without a model, or with too many arguments,
# it prints its usage and exits 2; an unknown model ends it before any LMDB is built.
set -euo pipefail
usage="usage: $0 MODEL [WORK]   (MODEL: see python3 -m sse.fer2013 nets --help; WORK: default work/fer2013)"
case "${1:-}" in
  -h|--help) echo "$usage"; exit 0 ;;
esac
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "$usage" >&2
  exit 2
fi
MODEL="$1"
WORK="${2:-work/fer2013}"
FER2013="${FER2013:-../shared/data/fer2013}"
STAGES="$(python3 -m sse.fer2013 stages "$MODEL")"
python3 -m sse.fer2013 --data "$FER2013" --work "$WORK" prepare >/dev/null
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" CAFFE_DATA_WORKERS="${CAFFE_DATA_WORKERS:-0}"
for _ in $STAGES; do
  { read -r SOLVER; read -r START || true; } <<<"$(python3 -m sse.fer2013 --work "$WORK" next "$MODEL")"
  [ -n "$SOLVER" ] || break
  caffe train --solver="$SOLVER" ${START:+"$START"} --no_progress 2>&1 | tee -a "$WORK/$MODEL/train.log"
done
