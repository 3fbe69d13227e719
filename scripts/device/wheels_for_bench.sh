#!/usr/bin/env bash
# Download the wheels bench/real_arch.py needs on the GPU image, into .whl/ (carried with `run`).
#
# The GPU image (KINDS.md) has torch 2.11, transformers 5.17, numpy, safetensors, huggingface-hub,
# filelock, regex, requests, httpx, pillow, tqdm, typing-extensions, but NOT diffusers or pydantic.
# diffusers 0.42.1 Requires-Dist (unzip -p .whl/diffusers-*.whl '*/METADATA' | grep ^Requires-Dist,
# non-extra lines): importlib_metadata, filelock, httpx, huggingface-hub, numpy, regex, requests,
# safetensors, Pillow -> only importlib_metadata (+ zipp) is missing there.
# zaoxiang's engine imports pydantic + pydantic-settings (settings.py) -> pydantic, pydantic-core,
# annotated-types, typing-inspection, pydantic-settings, python-dotenv.
# Versions are the ones pinned in this repo's .venv, so CPU tests and the GPU run agree.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
if ! git check-ignore -q .whl; then  # must not travel as tracked files, only through `carry`
    ex="$(git rev-parse --git-path info/exclude)"; mkdir -p "$(dirname "$ex")"; echo '/.whl/' >> "$ex"
fi
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
PIP=".venv/bin/python -m pip"
$PIP download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" -d .whl \
    diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2 \
    pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
    pydantic-settings==2.14.1 python-dotenv==1.2.4
# Check: every non-extra requirement of diffusers is either on the image or in .whl/.
unzip -p .whl/diffusers-0.42.1-*.whl '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
ls -la .whl
du -sh .whl
