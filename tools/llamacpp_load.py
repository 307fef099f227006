#!/usr/bin/env python3
"""Does llama.cpp load and evaluate a file that `phiq quantize` wrote?

    python tools/llamacpp_load.py SRC.gguf PHIQ_OUT.gguf PRESET [--pure] [--ids 1,2,3]

Quantizes SRC with llama.cpp itself (llama-cpp-python's `llama_model_quantize`, default
parameters, the preset's ftype, `pure` as given: what `llama-quantize [--pure] SRC OUT PRESET`
does), loads both that file and PHIQ_OUT with llama-cpp-python (one thread, all logits,
context 64), evaluates the same ids, and prints one JSON object: whether both loaded, the
number of positions, whether phiq's logits are finite, and the largest absolute difference
between the two files' logits (0 when llama.cpp computes the same numbers from both).
Needs numpy and llama-cpp-python.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import llama_cpp


def logits(path, ids):
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_threads=1, n_threads_batch=1,
                          logits_all=True, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[:len(ids)], dtype=np.float32)
    llm.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("phiq_file")
    ap.add_argument("preset")
    ap.add_argument("--pure", action="store_true")
    ap.add_argument("--ids", default="100264,882,100266,9906,11,1917,0,13,220,100265")
    a = ap.parse_args()
    ids = [int(i) for i in a.ids.split(",")]
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{a.preset}")
    with tempfile.TemporaryDirectory() as d:
        own = os.path.join(d, "llamacpp.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.pure = a.pure
        params.nthread = 1
        rc = llama_cpp.llama_model_quantize(a.src.encode(), own.encode(), params)
        if rc != 0:
            raise SystemExit(f"llama_model_quantize failed: {rc}")
        ref = logits(own, ids)
    ours = logits(a.phiq_file, ids)
    print(json.dumps({
        "loaded": True,
        "n_positions": int(len(ours)),
        "finite": bool(np.isfinite(ours).all()),
        "max_abs_diff": float(np.abs(ours.astype(np.float64) - ref).max()),
        "llama_cpp_python": llama_cpp.__version__,
    }))


if __name__ == "__main__":
    main()
