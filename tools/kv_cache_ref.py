#!/usr/bin/env python3
"""llama.cpp's divergence with a quantized KV cache: the bars for phiq's `-ctk`/`-ctv`.

    target/llcpp/bin/python tools/kv_cache_ref.py \
        [--model target/tiny-models/tiny-phi4-F32.gguf] \
        [--out tests/fixtures/reference/llamacpp-kv-cache.json]

Evaluates one long sequence (the first N tokens of tests/fixtures/text/alice-ch3.txt, as
llama.cpp tokenizes it) with llama.cpp (llama-cpp-python: all logits, one thread, one batch,
flash attention on, as llama.cpp needs for a quantized V cache) once with an F32 KV cache
and once for every (type_k, type_v) in {f16, bf16, q8_0, q4_0}^2, and compares each with the
default F16/F16 cache's logits of llama.cpp: mean and max KL(P_f32 || P_cache) over the
positions and the fraction of positions whose argmax agrees, as llama.cpp users measure a
cache type (llama-perplexity --kl-divergence against the default cache). Not against F32:
with flash attention this llama.cpp's F32 cache gives logits bit-identical to its F16 one
(`f32_flash_attn_vs_f16`: its CPU kernel rounds K and V to f16), so F16 is its most exact
setting. phiq's test (tests/forward_reference.rs,
`quantized_kv_cache_no_worse_than_llama_cpp`) does the same against phiq's own F16-cache
logits and holds each figure to llama.cpp's.

Needs numpy and llama-cpp-python (tools/build_llamacpp.sh's flags: GGML_NATIVE=OFF and this
CPU's instruction sets, never AMX; e.g. CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON ..."
pip install llama-cpp-python==0.3.36), and the tiny model from tools/tiny_models.py.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TYPES = {
    "f32": llama_cpp.GGML_TYPE_F32,
    "f16": llama_cpp.GGML_TYPE_F16,
    "bf16": 30,  # GGML_TYPE_BF16 (ggml.h), which the bindings do not name
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare(ref, test):
    lp, lq = log_softmax(ref), log_softmax(test)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return {
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1_agreement": float((ref.argmax(-1) == test.argmax(-1)).mean()),
    }


def logits(path, ids, k, v):
    llm = llama_cpp.Llama(model_path=path, n_ctx=len(ids), n_batch=len(ids), n_ubatch=len(ids),
                          n_threads=1, n_threads_batch=1, logits_all=True, verbose=False, seed=0,
                          flash_attn=True, type_k=TYPES[k], type_v=TYPES[v])
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "target/tiny-models/tiny-phi4-F32.gguf"))
    ap.add_argument("--text", default=os.path.join(ROOT, "tests/fixtures/text/alice-ch3.txt"))
    ap.add_argument("--n-tokens", type=int, default=512)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/reference/llamacpp-kv-cache.json"))
    args = ap.parse_args()
    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    vocab = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    text = open(args.text, encoding="utf-8").read()
    ids = vocab.tokenize(text.encode(), add_bos=False, special=False)[: args.n_tokens]
    vocab.close()
    base = logits(args.model, ids, "f16", "f16")
    f32_fa = logits(args.model, ids, "f32", "f32")
    # Without flash attention (another code path; F32 K and V kept as they are).
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=len(ids), n_batch=len(ids), n_ubatch=len(ids),
                          n_threads=1, n_threads_batch=1, logits_all=True, verbose=False, seed=0,
                          type_k=TYPES["f32"], type_v=TYPES["f32"])
    llm.eval(ids)
    no_fa = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.close()
    caches = {}
    for k in ("f16", "bf16", "q8_0", "q4_0"):
        for v in ("f16", "bf16", "q8_0", "q4_0"):
            if (k, v) == ("f16", "f16"):
                continue
            r = compare(base, logits(args.model, ids, k, v))
            caches[f"{k}/{v}"] = r
            print(f"K {k:5} V {v:5}: mean KL {r['mean_kl']:.3e}  max {r['max_kl']:.3e}  "
                  f"top-1 {r['top1_agreement']:.4f}", file=sys.stderr)
    out = {
        "about": "llama.cpp (llama-cpp-python " + llama_cpp.__version__ + ") with each KV cache type pair "
                 "against its own F16-cache logits on the same sequence; made by tools/kv_cache_ref.py",
        "model": os.path.basename(args.model),
        "model_sha256": sha,
        "text": os.path.relpath(args.text, ROOT),
        "ids": ids,
        "settings": "llama_cpp.Llama(n_ctx=n_batch=n_ubatch=len(ids), n_threads=1, logits_all=True, "
                    "flash_attn=True, type_k, type_v)",
        "baseline": "f16/f16",
        "f32_flash_attn_vs_f16": compare(base, f32_fa),
        "f32_no_flash_attn_vs_f16": compare(base, no_fa),
        "caches": caches,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
