# The device run of docs/bench/qb32-prefetch-session24-device.json (session 24), on the device tool's Xeon: .dev/ held
# mikv_old (built here at 5a6e52e), mikv_new (the session's head), build/tests/mikv_random_gguf, the llama-spm vocab GGUF
# from ../shared/tokenizers/llama.cpp-vocab and libbenchmark.so.1debian; run as THREADS="2 4 8" REPS=4 bash .dev/run.sh.
set -e
cd .dev
export LD_LIBRARY_PATH=$PWD
nproc; grep -m1 "model name" /proc/cpuinfo
./mikv_random_gguf smollm2-135m q4_0 33000 ggml-vocab-llama-spm.gguf /tmp/s.gguf > /dev/null
./mikv_new convert /tmp/s.gguf -o /tmp/s.mikv > /dev/null 2>&1
P=512; B=$((23040*(P+33)/5))
for T in ${THREADS:-2 8}; do for r in $(seq ${REPS:-3}); do for who in old new; do
  ./mikv_$who bench -m /tmp/s.mikv --model-only -t $T --prompt $P --decode 256 --kv-policy mikv --hi-frac 0.04 --lo int2 --kv-budget $B --phases --json > /tmp/$who-t$T-r$r.json
  python3 -c "
import json;m=json.load(open('/tmp/$who-t$T-r$r.json'))['model'];ph=m['decode_phase_us_per_token']
print('$who t$T',round(m['decode_tokens_per_second'],1),round(m['decode_fraction_of_copy'],3),'proj',round(sum(ph[k] for k in ('qkv','attn_out','gate_up','down','classifier'))),'attn',round(ph['attention']))"
done; done; done
python3 -c "import json,glob; json.dump({f.split('/')[-1]: json.load(open(f)) for f in sorted(glob.glob('/tmp/*-t*-r*.json'))}, open('$OUT/runs.json','w'), indent=1)"
