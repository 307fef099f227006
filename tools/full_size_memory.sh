#!/usr/bin/env bash
# Full-size memory check (heavy; not part of the default test run): writes the synthetic
# Phi-4 GGUFs (tools/synthetic_phi4.py, ~8-16 GB each, in $DIR) if missing, generates with
# each and checks that anonymous memory stays within KV cache + 512 MiB: the weights must
# stay in the page cache (file-backed), not on the heap.
#
#   bash tools/full_size_memory.sh [DIR=/tmp/phiq-full] [TYPES="Q4_0 Q8_0 Q4_K_M"]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/phiq-full}
types=${2:-"Q4_0 Q8_0 Q4_K_M"}
py=${PHIQ_PYTHON:-target/pyref/bin/python}
mkdir -p "$dir"
cargo build --release --quiet
status=0
for t in $types; do
  f="$dir/phi4-synthetic-$t.gguf"
  [ -f "$f" ] || "$py" tools/synthetic_phi4.py "$f" --type "$t"
  line=$(./target/release/phiq run -m "$f" -p "Hello" -n 8 --temp 0 -c 4096 -v 2>&1 >/dev/null | grep "phiq: memory")
  echo "$t: $line"
  anon=$(echo "$line" | sed -E 's/.*RssAnon ([0-9]+) MiB.*/\1/')
  kv=$(echo "$line" | sed -E 's/.*KV cache ([0-9]+) MiB.*/\1/')
  if [ "$anon" -gt $((kv + 512)) ]; then
    echo "FAIL: $t RssAnon $anon MiB > KV cache $kv MiB + 512 MiB"; status=1
  fi
done
exit $status
