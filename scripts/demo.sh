#!/usr/bin/env bash
# The main job on the default model: convert it to .mikv (once) and generate from a prompt.
# Until the project's own trained model is bundled (models/), the default is stories260K, a real
# trained Llama (karpathy's tinyllamas, MIT) read from ../shared/models.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${MIKV_SHARED:-../shared}/models/stories260K
OUT=build/models/stories260K.mikv
mkdir -p build/models
[[ -f "$OUT" ]] || ./build/tools/mikv convert "$SRC/stories260K.bin" --tokenizer "$SRC/tok512.bin" -o "$OUT"
./build/tools/mikv run -m "$OUT" -p "${1:-Once upon a time}" -n "${2:-128}"
