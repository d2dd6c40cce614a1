#!/usr/bin/env bash
# Installs mikv from the build tree into a scratch prefix, builds the C consumer against it with
# find_package(mikv) (and once more with pkg-config), and runs it on stories260K.
# Usage: run.sh <build dir> <mikv cli> <shared dir> <source dir>
set -euo pipefail
BUILD=$1 CLI=$2 SHARED=$3 SRC=$4
WORK=$(mktemp -d /tmp/mikv-c-consumer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cmake -S "$SRC/tests/c_consumer" -B "$WORK/build" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/build" >/dev/null
"$CLI" convert "$SHARED/models/stories260K/stories260K.bin" --tokenizer "$SHARED/models/stories260K/tok512.bin" \
  -o "$WORK/stories.mikv" >/dev/null
OUT=$("$WORK/build/generate" "$WORK/stories.mikv" "Once upon a time")
echo "$OUT"
grep -q "there was a little girl named Lily" <<<"$OUT"
# pkg-config: the same program, compiled by hand.
PKG_CONFIG_PATH="$WORK/prefix/lib/pkgconfig" cc -std=c99 -o "$WORK/generate-pc" "$SRC/tests/c_consumer/main.c" \
  $(PKG_CONFIG_PATH="$WORK/prefix/lib/pkgconfig" pkg-config --cflags --libs mikv)
"$WORK/generate-pc" "$WORK/stories.mikv" "Once upon a time" | grep -q "Lily"
echo "c consumer: find_package and pkg-config builds both generate"
