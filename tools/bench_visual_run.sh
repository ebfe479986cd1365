#!/bin/bash
# One visual benchmark run (joint_visual with the visual preset's settings: 2000 steps at batch 16,
# then 100 rollouts from last.pt) on two copies of the look-alike set, in one sitting: the
# full-detail scene (before the cheaper frame) and mesh_detail low (after). Prints each part's
# wall time and the ratio after / before.
#
#   embodied-data collect lookalike                                              # low (the recipe's)
#   embodied-data collect lookalike --mesh-detail full --out datasets/lookalike_full
#   bash tools/bench_visual_run.sh [BEFORE_DATA] [AFTER_DATA] [OUT]
#   STEPS=20 EPISODES=1 bash tools/bench_visual_run.sh          # a smoke test of the tool
#
# Both trainings run at once, one thread each (their cost is the same: images are read from the
# HDF5 files, not rendered); then each evaluation runs alone with 2 workers, after, before and
# after again (the machine's speed drifts; the two "after" figures show by how much). Run it on
# a machine with nothing else running.
set -euo pipefail
before=${1:-datasets/lookalike_full}
after=${2:-datasets/lookalike}
out=${3:-runs/bench_visual_run}
export MUJOCO_GL=${MUJOCO_GL:-egl} OMP_NUM_THREADS=1
steps=${STEPS:-2000} episodes=${EPISODES:-10}
preset="steps=$steps data.batch_size=16 optim.lr=1.0e-3 optim.warmup_steps=100 val_every=$steps"
preset="$preset val_batches=20 ckpt_every=$steps log_every=100 seed=0"
mkdir -p "$out"
rm -f "$out"/before.eval_s "$out"/after.eval_s  # a rerun into the same folder starts its figures afresh
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; $(date -u +%FT%TZ)"
seconds() { python -c "import json,sys; print(round(json.load(open(sys.argv[1]))[sys.argv[2]], 1))" "$@"; }
train() {  # which data
  local t0; t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  embodied-train joint_visual $preset "data.paths=[$2]" "out=$out/$1" --overwrite > "$out/$1.train.log" 2>&1 ||
    { echo "$1: training failed: $(tail -1 "$out/$1.train.log")" >&2; return 2; }
  python -c "import sys; print(round($(date +%s.%N) - $t0, 1))" > "$out/$1.train_s"
}
train before "$before" &
first=$!
train after "$after" &
second=$!
# either training failing stops the tool (set -e; its log: $out/<which>.train.log)
wait "$first"
wait "$second"
for which in after before after; do
  dir="$out/$which/eval_$(date +%s%N)"
  embodied-eval "$out/$which/checkpoints/last.pt" --episodes "$episodes" --workers 2 --out "$dir" > /dev/null 2>&1
  wall=$(seconds "$dir/results.json" wall_s)
  echo "$which: evaluation $wall s"
  echo "$wall" >> "$out/$which.eval_s"
done
python - "$out" <<'PY'
import statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
t = {w: float((out / f"{w}.train_s").read_text()) for w in ("before", "after")}
e = {w: statistics.median(float(x) for x in (out / f"{w}.eval_s").read_text().split()) for w in ("before", "after")}
for w in ("before", "after"):
    print(f"{w}: training {t[w]:.0f} s + evaluation {e[w]:.0f} s = {t[w] + e[w]:.0f} s")
print(f"after / before: evaluation {e['after'] / e['before']:.2f}, the run {(t['after'] + e['after']) / (t['before'] + e['before']):.2f}")
PY
