#!/usr/bin/env bash
# torch for `make setup`: its CPU wheel on a machine without an NVIDIA GPU, else PyPI's build.
#
# PyPI's torch for Linux x86_64 is the CUDA build (with some 28 NVIDIA packages, several GB);
# the CPU wheel is only on PyTorch's own index, which machines that reach only the package
# registries cannot reach (pip then retries for about 2 minutes before it gives up). So that
# index is asked once, with no retries and a short time-out, and where it does not answer PyPI's
# wheel is taken instead: it runs on a CPU too, only larger. A torch of the right version that
# is installed already (a CPU or CUDA build, or one from a local wheel folder) is kept.
set -euo pipefail
PY=${PY:-python}
VERSION=${TORCH_VERSION:-2.13.0}
CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

have=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [ "${have%%+*}" = "$VERSION" ]; then
    echo "setup: torch $have is installed"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: an NVIDIA GPU: torch $VERSION from PyPI (its CUDA build)"
    exec "$PY" -m pip install -q "torch==$VERSION"
fi
echo "setup: no NVIDIA GPU: torch $VERSION's CPU wheel from $CPU_INDEX"
if "$PY" -m pip install -q "torch==$VERSION" --index-url "$CPU_INDEX" --retries 0 --timeout 10 2>/dev/null; then
    exit 0
fi
echo "setup: $CPU_INDEX did not answer; torch $VERSION from PyPI instead (the CUDA build, which runs on a CPU too)"
exec "$PY" -m pip install -q "torch==$VERSION"
