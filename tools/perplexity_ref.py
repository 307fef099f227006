#!/usr/bin/env python3
"""llama-perplexity's figures on the demo model, as references for `phiq perplexity`.

    python tools/perplexity_ref.py [--llamacpp target/llamacpp/bin] [--workdir /tmp/phiq-ppl-ref]

Text: tests/fixtures/text/alice-ch3.txt (chapter III of Alice's Adventures in Wonderland,
public domain; 2578 Phi-4 tokens), context 128 (20 chunks). Runs, with 2 threads:
1. `llama-perplexity -m models/phiq-demo.gguf -f TEXT -c 128 -fa off` and the same with the
   default flash-attention setting (auto = on for the CPU): per-chunk running estimates and
   the final PPL. With flash attention ggml's CPU kernel rounds Q to f16 before Q·K
   (ops.cpp, `q_to_vec_dot`); phiq, like llama.cpp's non-flash path, multiplies in f32, so
   the `-fa off` figures are the like-for-like reference.
2. `llama-quantize --allow-requantize --pure models/phiq-demo.gguf Q4_0.gguf Q4_0` (per-tensor
   sha256 recorded, so a test can check phiq writes the same bytes), then
   `llama-perplexity --kl-divergence-base` on the demo model and `--kl-divergence` on the
   Q4_0 file (`-fa off`): mean KLD, 99th percentile, same-top-p, and the Q4_0 file's PPL.
Writes tests/fixtures/reference/llamacpp-perplexity.json. Needs only llama.cpp's tools.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imatrix_ref as ir  # noqa: E402  (its GGUF tensor reader)

REPO_ROOT = ir.REPO_ROOT
TEXT = "tests/fixtures/text/alice-ch3.txt"
MODEL = "models/phiq-demo.gguf"
CTX = "128"


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    return p.stdout + p.stderr


def parse_ppl(out):
    chunks = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", out)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    return {"chunks": chunks, "final": float(m.group(1)), "final_uncertainty": float(m.group(2))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamacpp", default=os.path.join(REPO_ROOT, "target", "llamacpp", "bin"))
    ap.add_argument("--workdir", default="/tmp/phiq-ppl-ref")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    ppl_bin = os.path.join(args.llamacpp, "llama-perplexity")
    base = [ppl_bin, "-f", TEXT, "-c", CTX, "-t", "2"]
    doc = {
        "made_by": "python tools/perplexity_ref.py (see its docstring)",
        "llama_cpp": "llama.cpp vendored in llama-cpp-python 0.3.36, built by tools/build_llamacpp.sh",
        "model": MODEL + ", sha256 " + ir.sha256_file(os.path.join(REPO_ROOT, MODEL)),
        "text": TEXT + ", sha256 " + ir.sha256_file(os.path.join(REPO_ROOT, TEXT)),
        "ctx": int(CTX),
    }
    cmd = ["llama-perplexity", "-m", MODEL, "-f", TEXT, "-c", CTX, "-t", "2"]
    doc["fa_off"] = {"command": " ".join(cmd + ["-fa", "off"]),
                     **parse_ppl(run(base + ["-m", MODEL, "-fa", "off"]))}
    doc["default"] = {"command": " ".join(cmd), **parse_ppl(run(base + ["-m", MODEL]))}

    q4 = os.path.join(args.workdir, "demo-Q4_0.gguf")
    kld = os.path.join(args.workdir, "demo.kld")
    run([os.path.join(args.llamacpp, "llama-quantize"), "--allow-requantize", "--pure", MODEL, q4,
         "Q4_0", "2"])
    tensors = ir.read_tensors(q4)
    run(base + ["-m", MODEL, "-fa", "off", "--kl-divergence-base", kld])
    out = run(base + ["-m", q4, "-fa", "off", "--kl-divergence-base", kld, "--kl-divergence"])
    os.remove(kld)

    def stat(label):
        m = re.search(re.escape(label) + r"\s*([-0-9.]+)", out)
        return float(m.group(1))
    doc["kl_divergence"] = {
        "quantize_command": "llama-quantize --allow-requantize --pure models/phiq-demo.gguf "
                            "demo-Q4_0.gguf Q4_0 2",
        "commands": [" ".join(cmd + ["-fa", "off", "--kl-divergence-base", "demo.kld"]),
                     "llama-perplexity -m demo-Q4_0.gguf -f " + TEXT + " -c " + CTX
                     + " -t 2 -fa off --kl-divergence-base demo.kld --kl-divergence"],
        "q4_0_tensors": {n: {"type": t, "sha256": hashlib.sha256(b).hexdigest()}
                         for n, (t, b) in tensors.items()},
        "q4_0_ppl_command": "llama-perplexity -m demo-Q4_0.gguf -f " + TEXT + " -c " + CTX
                            + " -t 2 -fa off",
        "q4_0_ppl": parse_ppl(run(base + ["-m", q4, "-fa", "off"]))["final"],
        "mean_kld": stat("Mean    KLD:"),
        "kld_99": stat("99.0%   KLD:"),
        "median_kld": stat("Median  KLD:"),
        "same_top_p_percent": stat("Same top p:"),
    }
    path = os.path.join(REPO_ROOT, "tests", "fixtures", "reference", "llamacpp-perplexity.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
