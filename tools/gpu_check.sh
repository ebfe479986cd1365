#!/usr/bin/env bash
# Every GPU check of the project in one short script, for a lent GPU machine with a time limit:
#   1. the CUDA tests (tests/test_cuda.py: autocast training, its summary, a CUDA checkpoint
#      evaluated on the GPU and on a CPU, a CPU run resumed on the GPU);
#   2. the speed of the large presets' training steps (tools/bench_train.py --peak --device cuda:
#      visual_large with the fp32 baseline beside it, then large, the MT10 models);
#   3. visual_large end to end at a few hundred steps: a small look-alike set collected here,
#      then embodied-bench --preset visual_large with 1 seed (policy, recognizer, joint, probes,
#      rollouts, report), so every CUDA path of the benchmark runs once.
# Each stage has its own time limit, so one that hangs leaves the others their time. What it
# writes goes to $OUT (default /tmp/gpu_check): gpu_check.log and each stage's own file.
#
#   bash tools/gpu_check.sh                       # on the GPU machine, from the repo root
#   STEPS=4 EPISODES=2 REPS=1 bash tools/gpu_check.sh   # a dry run of the script on a CPU
#
# A machine without the simulator's packages gets them from wheels in .whl/ and the EGL loader
# from .gl/*.deb, where those folders exist (both git-ignored through .git/info/exclude; about
# 47 MB together). Made here, for the GPU machine's Python 3.12, as this project did:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform any -d .whl mujoco==3.3.0 gymnasium==1.4.0 metaworld==3.1.1 farama-notifications \
#     glfw==2.11.0 PyOpenGL==3.1.10            # (one spec per call if pip refuses the mix)
#   mkdir -p .gl && (cd .gl && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# and the call carries both: run(command="bash tools/gpu_check.sh", carry=[".whl", ".gl"]).
# imageio-ffmpeg (68 MB) does not fit the 64 MiB a call carries, so the GPU run writes no video.
set -u
OUT=${OUT:-/tmp/gpu_check}
STEPS=${STEPS:-300}        # training steps of each benchmark run
EPISODES=${EPISODES:-5}    # demonstrations per task collected here (1 of 5 is validation)
REPS=${REPS:-5}            # timed repeats of each step in the speed benchmark
WORKERS=${WORKERS:-10}     # collection and rollout worker processes
WORK=${WORK:-/tmp/gpu_work}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
LOG=$OUT/gpu_check.log
say() { echo "[gpu_check $(date +%T)] $*" | tee -a "$LOG"; }
# stage NAME SECONDS FILE CMD...: runs CMD under a time limit, its output into FILE and the log
stage() {
  local name=$1 limit=$2 file=$3; shift 3
  say "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$file" 2>&1
  local rc=$?
  cat "$OUT/$file" >> "$LOG"
  say "== $name: exit $rc after $((SECONDS - t0)) s"
}

# --------------------------------------------------------------------------- 0. packages, GPU, EGL
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$LOG" 2>&1 || say "wheel install failed"
  export PYTHONPATH=/tmp/site
fi
if [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true; } | tee -a "$LOG"
python3 - <<'EOF' 2>&1 | tee -a "$LOG"
import time, torch, mujoco, gymnasium, metaworld, h5py
print(f"python ok: torch {torch.__version__} cuda {torch.cuda.is_available()} "
      f"({torch.cuda.get_device_name() if torch.cuda.is_available() else '-'}), mujoco {mujoco.__version__}")
t = time.perf_counter()
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
with mujoco.Renderer(m, 64, 64) as r:
    r.update_scene(mujoco.MjData(m)); img = r.render()
print(f"EGL render ok: {img.shape}, {time.perf_counter() - t:.2f} s")
EOF

# --------------------------------------------------------------------------- 1. the CUDA tests
stage "tests/test_cuda.py" 90 pytest_cuda.txt python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs

# --------------------------------------------------------------------------- 2. step speed
DEV=cpu
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEV=cuda
stage "bench_train visual_large" 100 bench_train_visual_large.txt python3 tools/bench_train.py --peak \
  --baseline --synthetic --device "$DEV" --preset visual_large --reps "$REPS" --warmup 3
stage "bench_train large" 60 bench_train_large.txt python3 tools/bench_train.py --peak \
  --synthetic --device "$DEV" --preset large --reps "$REPS" --warmup 3

# --------------------------------------------------------------------------- 3. visual_large end to end
stage "collect look-alikes" 90 collect.txt python3 -m embodied.cli.data collect lookalike \
  --episodes "$EPISODES" --workers "$WORKERS" --out "$WORK/lookalike" --overwrite
every=$((STEPS < 50 ? STEPS : 50))
stage "bench visual_large, 1 seed, $STEPS steps" 200 bench.txt python3 -m embodied.cli.bench \
  --preset visual_large --seeds 1 --out "$WORK/bench_visual_large" \
  "data.paths=[$WORK/lookalike]" data.recipe=null eval.episodes=2 "eval.workers=$WORKERS" \
  "shared=[steps=$STEPS,data.batch_size=64,optim.lr=1.0e-3,optim.warmup_steps=$((STEPS / 6)),optim.ema=0.999,val_every=$STEPS,val_batches=5,ckpt_every=$STEPS,log_every=$every]" \
  "probe.overrides=[steps=$((STEPS / 3)),val_every=$((STEPS / 3)),ckpt_every=$((STEPS / 3)),log_every=$every,data.batch_size=64]"
python3 - "$WORK/bench_visual_large" "$OUT/summaries.json" <<'EOF' 2>&1 | tee -a "$LOG"
# Each run's training summary (samples/s, GPU memory, precision, losses) in one file.
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
runs = {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))}
Path(sys.argv[2]).write_text(json.dumps(runs, indent=1))
for name, s in runs.items():
    print(f"{name}: {s['steps']} steps, {s['wall_time_s']} s, {s['samples_per_s']} samples/s, "
          f"{s.get('precision')}, GPU memory {s.get('cuda_max_memory_mib')} MiB, val loss {s['val'].get('loss')}")
EOF
cp "$WORK/bench_visual_large/results.md" "$OUT/bench_results.md" 2>/dev/null || say "no results.md"
say "done"
