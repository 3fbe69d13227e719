#!/usr/bin/env bash
# Session 3, call 1 (carry .stage3a, .whl): stage run 2's weights, install the wheels into
# /tmp/site (both outlive the call while the machine is held).
set -x
mkdir -p /root/stage && cp -r .stage3a/* /root/stage/ && ls -la /root/stage /root/stage/weights
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
PYTHONPATH=/tmp/site python3 -c "import pydantic, diffusers; print('wheels ok', pydantic.VERSION, diffusers.__version__)"
nvidia-smi --query-gpu=index,name,memory.used --format=csv
