#!/usr/bin/env python3
"""llama.cpp's accuracy on its own importance-matrix IQ1-IQ3 files of tiny-phi4: the bars
for phiq on the same bytes (tests/forward_reference.rs, `iq_imatrix_kl_no_worse_than_llama_cpp`).

    python tools/imatrix_kl_ref.py [--llamacpp target/llamacpp] [--tiny-models target/tiny-models]
                                   [--workdir /tmp/phiq-imatrix-kl]

For every IQ preset of PRESETS: `llama-quantize --imatrix tiny-phi4.imatrix.gguf
tiny-phi4-F32.gguf OUT PRESET` (the files tools/imatrix_ref.py hashes, which phiq writes
byte for byte), then llama.cpp's logits of every position of tiny-phi4's `chat` sequence
(tools/llamacpp_logits_dump.c, built here against the static libraries of
tools/build_llamacpp.sh: one thread, F32 KV cache, no flash attention, i.e.
tools/llamacpp_logits.py's `kv_f32` setting, whose figure for Q4_K_M it reproduces to
6 digits), compared with transformers' float32 logits (tests/fixtures/reference/
tiny-phi4.chat.logits.npy): mean and max KL(P_transformers || P_llama.cpp), top-1
agreement, max |dlogit|. Written to tests/fixtures/reference/imatrix/llamacpp-imatrix-kl.json.

Needs numpy, a C/C++ compiler, and llama.cpp built by tools/build_llamacpp.sh.
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(REPO_ROOT, "tests", "fixtures", "reference")
PRESETS = ["IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS",
           "IQ1_M", "IQ1_S"]


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare(ref, test):
    """tools/llamacpp_logits.py's `compare`."""
    lp, lq = log_softmax(ref), log_softmax(test)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return {
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1_agreement": float((ref.argmax(-1) == test.argmax(-1)).mean()),
        "max_abs_logit_diff": float(np.abs(ref.astype(np.float64) - test).max()),
    }


def build_dump(llamacpp, workdir):
    build = sorted(glob.glob(os.path.join(llamacpp, "build-*")))[-1]
    src = sorted(glob.glob(os.path.join(llamacpp, "src-*")))[-1]
    obj = os.path.join(workdir, "dump.o")
    exe = os.path.join(workdir, "llamacpp_logits_dump")
    subprocess.run(["cc", "-O2", "-c", os.path.join(REPO_ROOT, "tools", "llamacpp_logits_dump.c"),
                    "-I", os.path.join(src, "include"), "-I", os.path.join(src, "ggml", "include"),
                    "-o", obj], check=True)
    libs = [os.path.join(build, "src", "libllama.a")] + [
        os.path.join(build, "ggml", "src", f"libggml{s}.a") for s in ("", "-cpu", "-base")]
    subprocess.run(["c++", obj, "-o", exe, *libs, "-fopenmp", "-lpthread", "-lm", "-ldl"],
                   check=True)
    return exe


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamacpp", default=os.path.join(REPO_ROOT, "target", "llamacpp"))
    ap.add_argument("--tiny-models", default=os.path.join(REPO_ROOT, "target", "tiny-models"))
    ap.add_argument("--workdir", default="/tmp/phiq-imatrix-kl")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model = os.path.join(args.tiny_models, "tiny-phi4-F32.gguf")
    tiny = json.load(open(os.path.join(REF, "tiny-phi4.json")))
    want = tiny["gguf_files"]["tiny-phi4-F32.gguf"]["sha256"]
    if sha256_file(model) != want:
        raise SystemExit(f"{model}: not the tiny-phi4-F32.gguf of tiny-phi4.json (regenerate it)")
    ids = tiny["sequences"]["chat"]["ids"]
    ref = np.load(os.path.join(REF, "tiny-phi4.chat.logits.npy"))
    imatrix = os.path.join(REF, "imatrix", "tiny-phi4.imatrix.gguf")
    dump = build_dump(args.llamacpp, args.workdir)
    log = open(os.path.join(args.workdir, "llamacpp.log"), "ab")
    runs = {}
    for preset in PRESETS:
        out = os.path.join(args.workdir, f"tiny-phi4-{preset}.gguf")
        cmd = [os.path.join(args.llamacpp, "bin", "llama-quantize"), "--imatrix", imatrix,
               model, out, preset, "2"]
        print("+", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        logits_path = out + ".logits.f32"
        subprocess.run([dump, out, logits_path, *map(str, ids)], check=True, stdout=log,
                       stderr=subprocess.STDOUT)
        logits = np.fromfile(logits_path, dtype="<f4").reshape(len(ids), -1)
        runs[preset] = {"preset": preset, "imatrix": "tiny-phi4.imatrix.gguf",
                        "kv_f32": compare(ref, logits)}
        print(preset, runs[preset]["kv_f32"], file=sys.stderr)
        os.remove(out)
        os.remove(logits_path)
    doc = {
        "made_by": "python tools/imatrix_kl_ref.py",
        "llama_cpp": "llama.cpp vendored in llama-cpp-python 0.3.36, built by "
                     "tools/build_llamacpp.sh; logits by tools/llamacpp_logits_dump.c "
                     "(1 thread, F32 KV cache, no flash attention)",
        "model": "tiny-phi4-F32.gguf, sha256 " + want,
        "sequence": "tiny-phi4.json sequences.chat (10 ids)",
        "reference": "tiny-phi4.chat.logits.npy (transformers, float32)",
        "metrics": "KL(P_transformers || P_llama.cpp) with softmax over all ids in float64, "
                   "mean/max over positions; top1_agreement; max_abs_logit_diff",
        "runs": runs,
    }
    path = os.path.join(REF, "imatrix", "llamacpp-imatrix-kl.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
