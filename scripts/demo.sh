#!/usr/bin/env bash
# The main job on the bundled default model (models/mikv-default-14m, trained by the project; see its README):
# setup.sh has converted it to build/models/mikv-default.mikv; this streams a continuation of the prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=build/models/mikv-default.mikv
[[ -f "$MODEL" ]] || bash scripts/convert-default-model.sh
./build/tools/mikv run -m "$MODEL" -p "${1:-Once upon a time}" -n "${2:-128}" --temp 0.8 --seed 7
