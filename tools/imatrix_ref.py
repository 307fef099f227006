#!/usr/bin/env python3
"""llama.cpp's importance-matrix quantization on tiny-phi4, as references for `phiq quantize
--imatrix`.

    python tools/imatrix_ref.py [--llamacpp target/llamacpp/bin] [--tiny-models target/tiny-models]
                                [--workdir /tmp/phiq-imatrix-ref]

1. `llama-imatrix` computes an importance matrix for tiny-phi4-F32 (tools/tiny_models.py; its
   sha256 is checked against tests/fixtures/reference/tiny-phi4.json) on
   tests/fixtures/text/alice-ch3.txt, twice: once written in the GGUF format (the default) and
   once with `--output-format dat` (the legacy format). Both are committed under
   tests/fixtures/reference/imatrix/ (a few KB): they are the *inputs* of the test.
2. `llama-quantize --imatrix FILE tiny-phi4-F32.gguf OUT PRESET [--pure]` for every run of
   RUNS; per tensor, the type llama.cpp chose and the sha256 of its data bytes go to
   tests/fixtures/reference/imatrix/llamacpp-imatrix-quantize.json (the expected outputs).
   Runs without an imatrix record the file too, or `"refused": true` where llama-quantize
   refuses the preset without one.

Needs numpy (nothing else: the GGUF header is parsed here) and llama.cpp's tools
(tools/build_llamacpp.sh). Deterministic: llama-quantize's output does not depend on its
thread count (each row is quantized on its own).
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "reference", "imatrix")
TEXT = os.path.join(REPO_ROOT, "tests", "fixtures", "text", "alice-ch3.txt")

# llama-imatrix options: contexts of 128 tokens (the text has ~2600, so 20 chunks), the output
# tensor included so that output.weight (Q6_K in most presets) is quantized with weights too.
IMATRIX_ARGS = ["-c", "128", "-b", "128", "--process-output", "--no-ppl", "-t", "2"]

# (preset, pure, imatrix format). Every quantizer that takes importance weights appears:
# Q2_K (Q2_K, Q3_K, Q4_K), Q3_K_M (Q3_K, Q4_K, Q5_K), Q4_K_M (Q4_K, Q6_K), Q5_K_M (Q5_K, Q6_K),
# IQ4_XS (IQ4_XS, Q5_K), IQ4_NL pure, the legacy Q4_0 Q4_1 Q5_0 Q5_1 (pure, and Q4_0 mixed),
# and Q8_0 (which ignores them). Q4_K_M and IQ4_NL also with the legacy .dat file.
RUNS = [
    ("Q4_K_M", False, "gguf"),
    ("Q4_K_M", False, "dat"),
    ("Q2_K", False, "gguf"),
    ("Q3_K_M", False, "gguf"),
    ("Q5_K_M", False, "gguf"),
    ("IQ4_XS", False, "gguf"),
    ("IQ4_NL", True, "gguf"),
    ("IQ4_NL", True, "dat"),
    ("Q4_0", False, "gguf"),
    ("Q4_0", True, "gguf"),
    ("Q4_1", True, "gguf"),
    ("Q5_0", True, "gguf"),
    ("Q5_1", True, "gguf"),
    ("Q8_0", False, "gguf"),
    # The IQ1-IQ3 presets, each with llama.cpp's mix (IQ2_S is mostly IQ2_XS, IQ2_M mostly
    # IQ2_S; IQ1_S gives attn_output IQ2_XXS; the IQ2 presets give token_embd Q2_K or
    # IQ3_S, IQ3_XXS gives it IQ3_S: quantized without weights, as the imatrix has no entry).
    ("IQ3_M", False, "gguf"),
    ("IQ3_S", False, "gguf"),
    ("IQ3_XS", False, "gguf"),
    ("IQ3_XXS", False, "gguf"),
    ("IQ2_M", False, "gguf"),
    ("IQ2_S", False, "gguf"),
    ("IQ2_XS", False, "gguf"),
    ("IQ2_XXS", False, "gguf"),
    ("IQ1_M", False, "gguf"),
    ("IQ1_S", False, "gguf"),
    ("IQ1_M", False, "dat"),
    # Every IQ block type pure: output.weight with weights, token_embd.weight without
    # (IQ3_XXS, IQ3_S, IQ2_S, IQ1_M have a weight-less path). ggml cannot quantize IQ2_XXS,
    # IQ2_XS, IQ1_S without weights (llama-quantize aborts on token_embd), so those three
    # runs give token_embd another type.
    ("IQ3_XXS", True, "gguf"),
    ("IQ3_S", True, "gguf"),
    ("IQ2_M", True, "gguf"),
    ("IQ1_M", True, "gguf"),
    ("IQ2_XXS", True, "gguf", ["--token-embedding-type", "q8_0"]),
    ("IQ2_XS", True, "gguf", ["--token-embedding-type", "q8_0"]),
    ("IQ1_S", True, "gguf", ["--token-embedding-type", "q8_0"]),
    # Without an importance matrix (fmt None): llama-quantize refuses the presets whose
    # plan has IQ1/IQ2/IQ3_XXS tensors (besides token_embd and output); IQ3_S and IQ3_M
    # quantize (without weights, and IQ3_XXS's attn_v rule changes).
    ("IQ3_M", False, None),
    ("IQ3_S", False, None),
    ("IQ3_XS", False, None),
    ("IQ3_XXS", False, None),
    ("IQ2_M", False, None),
    ("IQ2_S", False, None),
    ("IQ2_XS", False, None),
    ("IQ2_XXS", False, None),
    ("IQ1_M", False, None),
    ("IQ1_S", False, None),
]

GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
                   10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 16: "IQ2_XXS",
                   17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
                   22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 30: "BF16"}
# (block size, bytes per block)
GGML_TYPE_SIZES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22),
                   7: (32, 24), 8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144),
                   13: (256, 176), 14: (256, 210), 16: (256, 66), 17: (256, 74),
                   18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
                   23: (256, 136), 29: (256, 56)}
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_tensors(path):
    """{name: (type name, data bytes)} of a GGUF v3 file (a direct parser of the header)."""
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] != 3:
        raise ValueError(f"{path}: not a GGUF v3 file")
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
    pos = 24

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        s = buf[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        return s

    def skip_value(vt):
        nonlocal pos
        if vt == 8:
            string()
        elif vt == 9:
            (at,) = struct.unpack_from("<I", buf, pos)
            (n,) = struct.unpack_from("<Q", buf, pos + 4)
            pos += 12
            if at in _SCALAR_SIZE:
                pos += n * _SCALAR_SIZE[at]
            else:
                for _ in range(n):
                    skip_value(at)
        else:
            pos += _SCALAR_SIZE[vt]

    alignment = 32
    for _ in range(n_kv):
        key = string()
        (vt,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", buf, pos)
        skip_value(vt)
    infos = []
    for _ in range(n_tensors):
        name = string()
        (nd,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{nd}Q", buf, pos + 4)
        pos += 4 + 8 * nd
        ty, off = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        infos.append((name, dims, ty, off))
    data = (pos + alignment - 1) // alignment * alignment
    out = {}
    for name, dims, ty, off in infos:
        n = 1
        for d in dims:
            n *= d
        bs, ts = GGML_TYPE_SIZES[ty]
        out[name] = (GGML_TYPE_NAMES[ty], buf[data + off:data + off + n // bs * ts])
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, log, cwd=None):
    print("+", " ".join(cmd), file=sys.stderr)
    with open(log, "ab") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=cwd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamacpp", default=os.path.join(REPO_ROOT, "target", "llamacpp", "bin"))
    ap.add_argument("--tiny-models", default=os.path.join(REPO_ROOT, "target", "tiny-models"))
    ap.add_argument("--workdir", default="/tmp/phiq-imatrix-ref")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(OUT_DIR, exist_ok=True)
    log = os.path.join(args.workdir, "llamacpp.log")
    model = os.path.join(args.tiny_models, "tiny-phi4-F32.gguf")
    want = json.load(open(os.path.join(REPO_ROOT, "tests/fixtures/reference/tiny-phi4.json")))
    want = want["gguf_files"]["tiny-phi4-F32.gguf"]["sha256"]
    if sha256_file(model) != want:
        raise SystemExit(f"{model}: not the tiny-phi4-F32.gguf of tiny-phi4.json (regenerate it)")

    imatrix = {}
    commands = {}
    for fmt in ["gguf", "dat"]:
        path = os.path.join(OUT_DIR, f"tiny-phi4.imatrix.{fmt}")
        # Run from the repository with a relative text path: llama-imatrix stores the path
        # it was given as the dataset name (imatrix.datasets).
        cmd = [os.path.join(args.llamacpp, "llama-imatrix"), "-m", model, "-f",
               os.path.relpath(TEXT, REPO_ROOT), *IMATRIX_ARGS, "--output-format", fmt, "-o", path]
        run(cmd, log, cwd=REPO_ROOT)
        imatrix[fmt] = path
        commands[fmt] = " ".join(["llama-imatrix", "-m", "tiny-phi4-F32.gguf", "-f",
                                  "tests/fixtures/text/alice-ch3.txt", *IMATRIX_ARGS,
                                  "--output-format", fmt, "-o",
                                  f"tests/fixtures/reference/imatrix/tiny-phi4.imatrix.{fmt}"])

    files = {}
    for preset, pure, fmt, *extra in RUNS:
        extra = extra[0] if extra else []
        key = f"{preset}{'-pure' if pure else ''}-{fmt or 'noimatrix'}"
        if extra:
            key += "-" + "-".join(a.lstrip("-") for a in extra)
        out = os.path.join(args.workdir, f"tiny-phi4-{key}.gguf")
        cmd = [os.path.join(args.llamacpp, "llama-quantize")]
        if fmt:
            cmd += ["--imatrix", imatrix[fmt]]
        if pure:
            cmd.append("--pure")
        cmd += extra + [model, out, preset, "2"]
        shown = " ".join(["llama-quantize"] + (["--imatrix", f"tiny-phi4.imatrix.{fmt}"] if fmt else [])
                         + (["--pure"] if pure else []) + extra
                         + ["tiny-phi4-F32.gguf", "OUT.gguf", preset, "2"])
        entry = {
            "preset": preset,
            "pure": pure,
            "imatrix": f"tiny-phi4.imatrix.{fmt}" if fmt else None,
            "command": shown,
        }
        if extra:
            entry["args"] = extra
        try:
            run(cmd, log)
        except subprocess.CalledProcessError:
            if fmt:
                raise
            # llama-quantize refused the plan: the test expects phiq to refuse it too.
            entry["refused"] = True
            files[key] = entry
            continue
        tensors = read_tensors(out)
        entry["tensors"] = {name: {"type": ty, "sha256": hashlib.sha256(data).hexdigest()}
                            for name, (ty, data) in tensors.items()}
        files[key] = entry
        os.remove(out)
    version = subprocess.run([os.path.join(args.llamacpp, "llama-quantize"), "--version"],
                             capture_output=True, text=True)
    doc = {
        "made_by": "python tools/imatrix_ref.py (see tests/fixtures/reference/README.md)",
        "llama_cpp": "llama.cpp vendored in llama-cpp-python 0.3.36, built by "
                     "tools/build_llamacpp.sh; " + (version.stdout + version.stderr).strip()
                     .replace(os.path.join(args.llamacpp, "llama-quantize"), "llama-quantize")
                     .replace("\n", "; "),
        "model": "tiny-phi4-F32.gguf (tools/tiny_models.py), sha256 " + want,
        "text": "tests/fixtures/text/alice-ch3.txt, sha256 " + sha256_file(TEXT),
        "imatrix_commands": commands,
        "imatrix_sha256": {f"tiny-phi4.imatrix.{f}": sha256_file(p) for f, p in imatrix.items()},
        "tensors": "per tensor of llama-quantize's output: the ggml type it chose and the sha256 "
                   "of its data bytes",
        "files": files,
    }
    path = os.path.join(OUT_DIR, "llamacpp-imatrix-quantize.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
