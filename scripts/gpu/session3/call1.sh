#!/usr/bin/env bash
# Session 3 (and later), call 1 (carry $STAGE_A [.stage3a] and .whl): stage the resume weights,
# install the wheels into /tmp/site (both outlive the call while the machine is held).
set -x
STAGE_A="${STAGE_A:-.stage3a}"
mkdir -p /root/stage && cp -r "$STAGE_A"/* /root/stage/ && ls -la /root/stage /root/stage/weights
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
PYTHONPATH=/tmp/site python3 -c "import pydantic, diffusers; print('wheels ok', pydantic.VERSION, diffusers.__version__)"
nvidia-smi --query-gpu=index,name,memory.used --format=csv
