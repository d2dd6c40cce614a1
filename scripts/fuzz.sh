#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time from seeds made of the real
# files in ../shared and of the tests' tiny Hugging Face files (fuzz/fuzz_seeds.cc). Usage: scripts/fuzz.sh [seconds
# per target, default 60] [executions per target, default no limit: whichever comes first ends a target];
# FUZZ_TARGETS="gguf tokenizers" picks targets. Prints executions and crashes per target; a crash fails the script
# and leaves its input in build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
RUNS_PER_TARGET=${2:--1}
ALL="mikv_loader gguf llama2c safetensors hf_config hf_tokenizer sentencepiece tokenizers c_api_config kv_spec utf8_utf16"
TARGETS=${FUZZ_TARGETS:-$ALL}
SHARED=${MIKV_SHARED:-../shared}
FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DMIKV_BUILD_FUZZERS=ON -DMIKV_BUILD_TESTS=OFF \
  -DMIKV_BUILD_JAVA=OFF -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-fuzz -j "$(nproc)" >/dev/null
B=build-fuzz
mkdir -p $B/seeds $B/crashes
for t in $ALL; do mkdir -p $B/seeds/$t; done
S=$SHARED/models/stories260K
[[ -f $B/stories.mikv ]] || $B/tools/mikv convert $S/stories260K.bin --tokenizer $S/tok512.bin -o $B/stories.mikv >/dev/null
[[ -f $B/default.mikv ]] || $B/tools/mikv convert models/mikv-default-14m -o $B/default.mikv --weights int8 >/dev/null
cp $B/stories.mikv $B/seeds/mikv_loader/
cp $S/stories260K-f32.gguf $B/seeds/gguf/
for f in $SHARED/tokenizers/llama.cpp-vocab/*.gguf; do head -c 200000 "$f" > $B/seeds/gguf/$(basename "$f"); done
{ printf '\x80'; cat $S/stories260K.bin $S/tok512.bin; } > $B/seeds/llama2c/stories
$B/fuzz/fuzz_seeds $B/seeds  # the Hugging Face targets' model.safetensors, config.json and tokenizer.json seeds
# tokenizer.model: Llama 2's with its first 600 pieces (the specials, the 256 bytes and the first merges) and every
# other field as it is: the protobuf's varints, keys and lengths as SentencePiece writes them, at a size a mutation
# run can afford.
python3 - "$SHARED/tokenizers/llama2-spm/tokenizer.model" "$B/seeds/sentencepiece/llama2-600" <<'PY'
import sys
data, out, pieces, i = open(sys.argv[1], "rb").read(), bytearray(), 0, 0
def varint(i):
    v = s = 0
    while True:
        b = data[i]; i += 1; v |= (b & 0x7f) << s; s += 7
        if b < 0x80: return v, i
while i < len(data):
    start = i
    key, i = varint(i)
    assert key & 7 == 2, "ModelProto's fields are length-delimited"
    n, i = varint(i)
    i += n
    if key >> 3 == 1:
        pieces += 1
        if pieces > 600: continue
    out += data[start:i]
open(sys.argv[2], "wb").write(out)
PY
for f in $SHARED/tokenizers/*/*.inp; do cp "$f" $B/seeds/tokenizers/ 2>/dev/null || true; done
printf 'Once upon a time' > $B/seeds/tokenizers/plain
printf 'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf \xf0\x9f' > $B/seeds/utf8_utf16/mixed
head -c 64 /dev/zero > $B/seeds/c_api_config/zero
# Cache strings: kv_config.h's examples and budget's presets.
i=0
for spec in mikv@0.05/int2 uniform/int3:g64+rot mikv@0.02/int4/int2:g64 mikv/int8@0.01/k4v2:g64/int2:g64+rot \
            mikv/int8:g64@0/k4v3:g64/k3v2:g64+rot h2o@0.25 full sinks plain; do
  printf '%s' "$spec" > $B/seeds/kv_spec/$((i++))
done
export MIKV_FUZZ_SPM_MODEL=$B/stories.mikv MIKV_FUZZ_BPE_MODEL=$B/default.mikv MIKV_FUZZ_VOCAB_DIR=$SHARED/tokenizers/llama.cpp-vocab
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
for t in $TARGETS; do
  log=$B/fuzz_$t.log
  # Tokenizers: short texts (a long one only repeats what short ones exercise, at a hundredth of the speed).
  max_len=262144; [[ $t == tokenizers || $t == utf8_utf16 ]] && max_len=2048
  # The JSON readers' keys and values as a dictionary (fuzz/hf_json.dict says why).
  dict=(); [[ $t == hf_config || $t == hf_tokenizer || $t == safetensors ]] && dict=(-dict=fuzz/hf_json.dict)
  if $B/fuzz/fuzz_$t -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS_PER_TARGET" -print_final_stats=1 -seed=1 \
       -max_len=$max_len -timeout=20 "${dict[@]}" \
       -rss_limit_mb=4096 -artifact_prefix=$B/crashes/$t- $B/seeds/$t >"$log" 2>&1; then result=ok; else result=CRASH; status=1; fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz $t: $execs executions, $result"
done
exit $status
