#!/usr/bin/env bash
# Do two phiq builds compute the same bits? For every model given, every kernel level this
# CPU has (PHIQ_ISA=scalar|avx2|avx512) and both paths through the matmuls (a 40-token
# batch: the tile kernels; -b 1: one token at a time, the GEMV kernels), `phiq logits`
# of both builds must be byte-identical. For refactorings that must not change any
# arithmetic (e.g. `bash tools/same_bits.sh old/phiq target/release/phiq models/*.gguf`).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 OLD_PHIQ NEW_PHIQ MODEL.gguf..." >&2
  exit 2
fi
old=$1 new=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prompt="Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had peeped into the book"
isas=$("$new" --version | sed -n 's/.*this CPU supports: //p' | tr -d ',)' | sed 's/+bf16//g')
same=0 differ=0
for model in "$@"; do
  for isa in $isas; do
    for batch in 512 1; do
      for build in old new; do
        bin=${!build}
        PHIQ_ISA=$isa "$bin" logits -m "$model" -p "$prompt" -b "$batch" -t 2 \
          -o "$tmp/$build.npy" 2>"$tmp/err" || {
          echo "same_bits: $bin failed on $model (PHIQ_ISA=$isa -b $batch):" >&2
          cat "$tmp/err" >&2
          exit 1
        }
      done
      if cmp -s "$tmp/old.npy" "$tmp/new.npy"; then
        same=$((same + 1))
      else
        differ=$((differ + 1))
        echo "DIFFER: $(basename "$model") isa=$isa batch=$batch" >&2
      fi
    done
  done
done
echo "same_bits: $same identical, $differ different ($# models x ISAs {$isas} x batch 512 and 1)"
[ "$differ" -eq 0 ]
