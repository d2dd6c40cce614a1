# Session 25 device run: thread-pool hand-off (hand_old/hand_new) and decode (mikv_old fbec86c, mikv_pf d1b50a0 =
# +stream prefetch, mikv_new = +pool job line/tagged shares/per-worker done).
set -e
cd .dev
export LD_LIBRARY_PATH=$PWD
nproc; grep -m1 "model name" /proc/cpuinfo
for T in 2 4 8 16; do for r in 1 2; do for v in old new; do echo -n "hand_$v "; ./hand_$v $T $T 0; echo -n "hand_$v "; ./hand_$v $T $((T*16)) 0; done; done; done 2>&1 | tee $OUT/hand.txt
./mikv_random_gguf smollm2-135m q4_0 33000 ggml-vocab-llama-spm.gguf /tmp/s.gguf > /dev/null
./mikv_new convert /tmp/s.gguf -o /tmp/s.mikv > /dev/null 2>&1
P=512; B=$((23040*(P+33)/5))
for T in ${THREADS:-2 4 8}; do for r in $(seq ${REPS:-3}); do for who in old pf new; do
  ./mikv_$who bench -m /tmp/s.mikv --model-only -t $T --prompt $P --decode 256 --kv-policy mikv --hi-frac 0.04 --lo int2 --kv-budget $B --phases --json > /tmp/$who-t$T-r$r.json
  python3 -c "
import json;m=json.load(open('/tmp/$who-t$T-r$r.json'))['model'];ph=m['decode_phase_us_per_token']
print('$who t$T',round(m['decode_tokens_per_second'],1),round(m['decode_fraction_of_copy'],3),round(m.get('decode_fraction_of_interleaved_copy',0),3),'proj',round(sum(ph[k] for k in ('qkv','attn_out','gate_up','down','classifier'))),'attn',round(ph['attention']))"
done; done; done
python3 -c "import json,glob; json.dump({f.split('/')[-1]: json.load(open(f)) for f in sorted(glob.glob('/tmp/*-t*-r*.json'))}, open('$OUT/runs.json','w'), indent=1)"
# Session 25 device run 2: alternating pairs, attention phase (old vs pf at 2 and 4 threads) and pool (pf vs new at 8).
cd .dev
export LD_LIBRARY_PATH=$PWD
[ -f /tmp/s.mikv ] || { ./mikv_random_gguf smollm2-135m q4_0 33000 ggml-vocab-llama-spm.gguf /tmp/s.gguf > /dev/null; ./mikv_new convert /tmp/s.gguf -o /tmp/s.mikv > /dev/null 2>&1; }
P=512; B=$((23040*(P+33)/5))
one() { # who T tag
  ./mikv_$1 bench -m /tmp/s.mikv --model-only -t $2 --prompt $P --decode 192 --kv-policy mikv --hi-frac 0.04 --lo int2 --kv-budget $B --phases --json > /tmp/r2-$3.json
  python3 -c "
import json;m=json.load(open('/tmp/r2-$3.json'))['model'];ph=m['decode_phase_us_per_token']
print('$1 t$2',round(m['decode_tokens_per_second'],1),'proj',round(sum(ph[k] for k in ('qkv','attn_out','gate_up','down','classifier'))),'attn',round(ph['attention']))"
}
for r in 1 2 3 4 5 6; do for T in 2 4; do one old $T old-t$T-r$r; one pf $T pf-t$T-r$r; done; done
for r in 1 2 3 4 5 6; do one pf 8 pf-t8-r$r; one new 8 new-t8-r$r; done
python3 -c "import json,glob; json.dump({f.split('/')[-1]: json.load(open(f)) for f in sorted(glob.glob('/tmp/r2-*.json'))}, open('$OUT/runs2.json','w'), indent=1)"
