#!/usr/bin/env bash
# Session 3, call 1: stage run 2's weights and the text-encoder subset (carry .stage3a).
set -x
mkdir -p /root/stage && cp -r .stage3a/* /root/stage/ && ls -la /root/stage /root/stage/weights
nvidia-smi --query-gpu=index,name,memory.used --format=csv
