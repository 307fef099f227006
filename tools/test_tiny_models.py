#!/usr/bin/env python3
"""Checks for tools/tiny_models.py (numpy + gguf only; tools/test.sh runs it).

1. Same inputs, byte-identical files: the generator run twice, in two fresh processes,
   writes the same bytes.
2. The files are the ones the committed references were made from: their sha256 equals
   `gguf_files` in tests/fixtures/reference/<model>.json (written by tools/ref_logits.py). A
   mismatch means numpy's random stream or gguf-py's writer changed, and the reference
   logits no longer describe the generated models.

Prints one line per check and `N passed, N failed`; exit 1 on any failure.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REFERENCE = os.path.join(REPO, "tests", "fixtures", "reference")

# A cheap selection covering both models, float, block-quantized and the LongRoPE tensors.
MODELS = "tiny-phi4,tiny-phi4-mini"
TYPES = "Q4_0,Q8_0"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def generate(outdir):
    subprocess.run([sys.executable, os.path.join(HERE, "tiny_models.py"), outdir,
                    "--models", MODELS, "--types", TYPES],
                   check=True, stderr=subprocess.DEVNULL)
    return {name: sha256(os.path.join(outdir, name)) for name in sorted(os.listdir(outdir))}


def main():
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if ok:
            passed += 1
        else:
            failed += 1

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        first, second = generate(a), generate(b)
    expected_names = sorted(f"{m}-{t}.gguf" for m in MODELS.split(",") for t in TYPES.split(","))
    check(sorted(first) == expected_names, f"tiny_models.py writes {', '.join(expected_names)}")
    for name in sorted(first):
        check(first[name] == second.get(name), f"{name}: two runs give byte-identical files")

    for model in MODELS.split(","):
        ref_path = os.path.join(REFERENCE, f"{model}.json")
        if not os.path.isfile(ref_path):
            check(False, f"{ref_path} exists")
            continue
        with open(ref_path) as f:
            hashes = json.load(f)["gguf_files"]
        for name, digest in sorted(first.items()):
            if name.startswith(model + "-") and name[len(model) + 1:-5] in TYPES.split(","):
                want = hashes.get(name, {}).get("sha256")
                check(digest == want, f"{name}: sha256 equals the one the reference logits were made with")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
