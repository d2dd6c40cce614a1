#!/usr/bin/env bash
# Usage: run.sh <java> <classes> <dir of libmikv_jni.so> <mikv cli> <shared dir>
set -euo pipefail
JAVA=$1 CLASSES=$2 LIBDIR=$3 CLI=$4 SHARED=$5
MODEL=$(mktemp /tmp/mikv-java.XXXXXX.mikv)
trap 'rm -f "$MODEL"' EXIT
"$CLI" convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" -o "$MODEL" >/dev/null
"$JAVA" -Djava.library.path="$LIBDIR" -cp "$CLASSES" MikvTest "$MODEL"
