#!/usr/bin/env bash
# Usage: run.sh <java> <classes> <dir of libmikv_jni.so> <mikv cli> <shared dir>
set -euo pipefail
JAVA=$1 CLASSES=$2 LIBDIR=$3 CLI=$4 SHARED=$5
MODEL=$(mktemp /tmp/mikv-java.XXXXXX.mikv) RANDOM_MODEL=$(mktemp /tmp/mikv-java-random.XXXXXX.mikv)
RANDOM_Q8=$(mktemp /tmp/mikv-java-random-q8.XXXXXX.mikv)
RANDOM_BIN=$RANDOM_MODEL.bin
trap 'rm -f "$MODEL" "$RANDOM_MODEL" "$RANDOM_Q8" "$RANDOM_BIN"' EXIT
"$CLI" convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" -o "$MODEL" >/dev/null
# A random model whose greedy output after an emoji is byte tokens: pieces that are not UTF-8.
python3 "$(dirname "$0")/random_llama2c.py" "$RANDOM_BIN"
"$CLI" convert "$RANDOM_BIN" --tokenizer "$SHARED/models/stories260K/tok512.bin" -o "$RANDOM_MODEL" >/dev/null
# The same in q8_0 blocks: decoded in lockstep, with thread shares.
"$CLI" convert "$RANDOM_BIN" --tokenizer "$SHARED/models/stories260K/tok512.bin" --weights q8_0 -o "$RANDOM_Q8" >/dev/null
# -Xcheck:jni: the JVM checks every JNI call's arguments, as Android's CheckJNI does in debug builds.
"$JAVA" -Xcheck:jni -Djava.library.path="$LIBDIR" -cp "$CLASSES" MikvTest "$MODEL" "$RANDOM_MODEL" "$RANDOM_Q8"
