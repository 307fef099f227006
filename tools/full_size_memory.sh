#!/usr/bin/env bash
# Full-size memory check (heavy; not part of the default test run): writes the synthetic
# Phi-4 GGUFs (tools/synthetic_phi4.py, ~8-16 GB each, in $DIR) if missing, generates with
# each at context $CTX with each KV cache type in $CACHES, and checks that anonymous memory
# stays within KV cache + 512 MiB: the weights must stay in the page cache (file-backed),
# not on the heap, and the scratch within bounds. With $PROMPT_TOKENS (default 8) the
# prompt has about that many tokens (512 or more: a full prompt batch's scratch).
#
#   bash tools/full_size_memory.sh [DIR=/tmp/phiq-full] [TYPES="Q4_0 Q8_0 Q4_K_M"]
#   CTX=16384 CACHES="f32 f16 bf16 q8_0 q4_0" bash tools/full_size_memory.sh /tmp/phiq-full Q4_0
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/phiq-full}
types=${2:-"Q4_0 Q8_0 Q4_K_M"}
ctx=${CTX:-4096}
caches=${CACHES:-f16}
prompt_tokens=${PROMPT_TOKENS:-8}
py=${PHIQ_PYTHON:-target/pyref/bin/python}
mkdir -p "$dir"
cargo build --release --quiet
# "Hello" is one token; each repetition of the sentence below about ten.
prompt=$(python3 -c "import sys; n=int(sys.argv[1]); print('Hello' if n < 10 else 'The quick brown fox jumps over the lazy dog. ' * (n // 10))" "$prompt_tokens")
status=0
printf '%-8s %-6s %6s %10s %10s %10s %10s\n' file cache ctx "peak RSS" RssAnon "KV cache" "anon - KV"
for t in $types; do
  f="$dir/phi4-synthetic-$t.gguf"
  [ -f "$f" ] || "$py" tools/synthetic_phi4.py "$f" --type "$t"
  for c in $caches; do
    line=$(./target/release/phiq run -m "$f" -p "$prompt" -n 8 --temp 0 -c "$ctx" -ctk "$c" -ctv "$c" -v 2>&1 >/dev/null | grep "phiq: memory")
    peak=$(echo "$line" | sed -E 's/.*peak RSS ([0-9]+) MiB.*/\1/')
    anon=$(echo "$line" | sed -E 's/.*RssAnon ([0-9]+) MiB.*/\1/')
    kv=$(echo "$line" | sed -E 's/.*KV cache ([0-9]+) MiB.*/\1/')
    printf '%-8s %-6s %6s %6s MiB %6s MiB %6s MiB %6s MiB\n' "$t" "$c" "$ctx" "$peak" "$anon" "$kv" $((anon - kv))
    if [ "$anon" -gt $((kv + 512)) ]; then
      echo "FAIL: $t -ctk/-ctv $c: RssAnon $anon MiB > KV cache $kv MiB + 512 MiB"; status=1
    fi
  done
done
exit $status
