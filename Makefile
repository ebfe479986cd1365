# Set-up and the two entry points of the README. `make` targets install what they need first.
PY ?= python
export MUJOCO_GL ?= egl

.PHONY: setup quickstart test test-all lint

setup:  ## install torch (its CPU wheel where there is no NVIDIA GPU and PyTorch's index answers: tools/install_torch.sh), the project, test tools
	PY=$(PY) bash tools/install_torch.sh
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps robomimic==0.3.0  # only its dataset reader, for the compatibility test

quickstart: setup  ## the main job on the built-in default: demos, mirror joint training, evaluation, a video
	embodied-data collect quick
	OMP_NUM_THREADS=1 embodied-train joint_quick --overwrite
	OMP_NUM_THREADS=1 embodied-eval runs/joint_quick --episodes 10 --videos 1
	@echo "results: runs/joint_quick/eval/results.md; rollout videos: runs/joint_quick/eval/videos/"

test: setup  ## the fast suite (slow end-to-end tests: make test-all)
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

lint:
	ruff check . && ruff format --check embodied tests tools  # as .ci/run: newer ruff also formats the README's code blocks
