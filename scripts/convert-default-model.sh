#!/usr/bin/env bash
# Converts the bundled Hugging Face folder to .mikv (float16 weights, as committed).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/models
./build/tools/mikv convert models/mikv-default-14m -o build/models/mikv-default.mikv
