#!/usr/bin/env bash
# Set up zaoxiang on a fresh Debian/Ubuntu machine: a venv in .venv with pinned dependencies.
#   ./setup.sh         run-time only (enough for `zaoxiang generate` and `zaoxiang serve`)
#   ./setup.sh --dev   also test/training tools: Debian packages (OCR, fonts, redis, chromium),
#                      the npm emoji/CLDR assets for the dataset builder, and the test extras.
# Nothing here downloads model weights; the built-in model ships inside the package.
set -euo pipefail
cd "$(dirname "$0")"

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PY="${PYTHON:-python3}"

if [[ $DEV == 1 ]]; then
  APT_PKGS=(tesseract-ocr tesseract-ocr-chi-sim fonts-noto-color-emoji fonts-noto-cjk redis-server chromium)
  missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# The CPU build of torch first, so nothing pulls the multi-GB CUDA build on a machine without a GPU.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
fi
EXTRAS=""
[[ $DEV == 1 ]] && EXTRAS="[dev]"
.venv/bin/pip install -q -e ".${EXTRAS}" 2>&1 | grep -v "is ignored" || true
# No deps: it asks for the GUI OpenCV build; pyproject pins the headless one it runs on.
.venv/bin/pip install -q --no-deps invisible-watermark==0.2.0 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import zaoxiang, torch, diffusers, imwatermark" >/dev/null

if [[ $DEV == 1 && -f scripts/setup_assets.sh ]]; then
  bash scripts/setup_assets.sh
fi
echo "setup: ok (.venv/bin/zaoxiang)"
