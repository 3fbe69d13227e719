#!/usr/bin/env bash
# The test command: set up with test extras, then run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
./setup.sh --dev
exec .venv/bin/python -m pytest -q "$@"
