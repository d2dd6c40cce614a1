#!/usr/bin/env bash
# The AVX-512 VBMI KV kernels of a base revision against the working tree's, in one process (scripts/kv_kernel_ab.cc
# says why): each tree's kernels_avx/qu4-qu2-kv-avx512vnni.cc is compiled as the VBMI table is
# (runtime/CMakeLists.txt's flags), under its own table name, and the harness alternates their calls.
#
#   scripts/kv-kernel-ab.sh [--base REV] [--patch FILE] [harness options...]
#
#   --base REV    the revision to compare against (default HEAD)
#   --patch FILE  compare the working tree with this patch applied (git apply) instead of the tree as it is
#   harness options: --precision int2 --part values --head-dim 64 --kv-group 32 --gqa 3 --tokens 4096 --kv-heads 1
#                    --calls 4000 (scripts/kv_kernel_ab.cc --help)
#
# Needs the build scripts/setup.sh makes (build/runtime/libmikv.a) and a CPU with AVX-512 VBMI. The two sides'
# runtime/kv_kernels.h and kv_codec.h must be the working tree's (the tables' layout and the rows' format): checked.
set -euo pipefail
base=HEAD
patch=
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --patch) patch=$(realpath "$2"); shift 2 ;;  # (resolved where the script was called from)
    *) args+=("$1"); shift ;;
  esac
done
cd "$(dirname "$0")/.."
root=$PWD
[[ -f build/runtime/libmikv.a ]] || { echo "no build/runtime/libmikv.a: run scripts/setup.sh first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base" "$work/new"
git archive "$base" kernels_avx runtime | tar -x -C "$work/base"
cp -r kernels_avx runtime "$work/new/"
if [[ -n "$patch" ]]; then (cd "$work/new" && git apply "$patch"); fi
# The harness and libmikv are this tree's: both tables must share their layout and the rows' format (the sources as
# compiled, the patch applied).
for header in runtime/kv_kernels.h runtime/kv_codec.h; do
  if ! cmp -s "$work/base/$header" "$header" || ! cmp -s "$work/new/$header" "$header"; then
    echo "$header differs between $base, the working tree${patch:+ and the patch}: the tables would not share one layout" >&2
    exit 2
  fi
done
flags=(-O3 -DNDEBUG -std=c++17 -DMIKV_HAVE_AVX_KERNELS=1 -mavx512f -mavx512vl -mavx512bw -mavx512vnni -mavx512vbmi
       -mgfni -mavx2 -mfma -mf16c -ffp-contract=off -Wno-maybe-uninitialized -Wno-uninitialized)
for side in base new; do
  table=kKvAb${side^}
  c++ "${flags[@]}" -I"$work/$side/runtime" -I"$work/$side/kernels_avx" -I"$work/$side/runtime/include" \
    -DMIKV_VNNI_TABLE="$table" -DMIKV_VNNI_TABLE_NAME="\"$side\"" \
    -c "$work/$side/kernels_avx/qu4-qu2-kv-avx512vnni.cc" -o "$work/$side.o" &
done
wait
c++ -O2 -std=c++17 -I"$root/runtime" scripts/kv_kernel_ab.cc "$work/base.o" "$work/new.o" build/runtime/libmikv.a \
  -lpthread -o "$work/kv_kernel_ab"
echo "base: $(git rev-parse --short "$base"); new: the working tree${patch:+ with $(basename "$patch")}"
"$work/kv_kernel_ab" "${args[@]}"
