#!/usr/bin/env python3
"""tiktoken's cl100k encode speed on the text benches/tokenizer.rs uses, for comparison.

tiktoken cannot download its rank file here, so the ranks are rebuilt from the npm package
`tiktoken` (as ../shared/fixtures/README.md describes): `encoders/cl100k_base.json` holds
them as lines of "<text> <first rank> <base64 token> <base64 token> ...".

Usage:
    python3 -m venv target/chatref && target/chatref/bin/pip install tiktoken
    (cd target && npm pack tiktoken@1.0.22 && tar xzf tiktoken-1.0.22.tgz)
    target/chatref/bin/python tools/bench_tiktoken.py target/package/encoders/cl100k_base.json \
        ../shared/fixtures [--write-ids target/bench_ids.json --write-text target/bench_text.txt]

Prints MB/s of `encode_ordinary` (one thread, best of several runs) on both bench texts.
With --write-ids and --write-text it also saves the ids and the text (texts <= 256 B), so
phiq's output on the same text can be compared: `phiq tokenize -m ggml-vocab-phi-4.gguf --ids --file target/bench_text.txt`.
"""

import argparse
import base64
import json
import time
from pathlib import Path

import tiktoken


def cl100k_ranks(npm_json):
    data = json.loads(Path(npm_json).read_text())
    ranks = {}
    for line in data["bpe_ranks"].split("\n"):
        if not line:
            continue
        _, offset, *tokens = line.split(" ")
        for i, token in enumerate(tokens):
            ranks[base64.b64decode(token)] = int(offset) + i
    return data["pat_str"], ranks


def bench_text(fixtures, max_len):
    """The corpus texts of at most max_len bytes joined by newlines, repeated up to at least
    1 MiB (the recipe of benches/tokenizer.rs)."""
    lines = (Path(fixtures) / "tokenizer/phi4-corpus.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    one = "\n".join(t for t in texts if len(t.encode("utf-8")) <= max_len)
    parts, size = [], 0
    while size < 1 << 20:
        parts.append(one + "\n")
        size += len((one + "\n").encode("utf-8"))
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("npm_json")
    ap.add_argument("fixtures")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--write-ids")
    ap.add_argument("--write-text")
    args = ap.parse_args()

    pat_str, ranks = cl100k_ranks(args.npm_json)
    enc = tiktoken.Encoding("cl100k_phi4", pat_str=pat_str, mergeable_ranks=ranks, special_tokens={})
    for label, max_len in (("texts <= 256 B", 256), ("whole corpus incl. stress cases", 1 << 62)):
        text = bench_text(args.fixtures, max_len)
        n_bytes = len(text.encode("utf-8"))
        ids = enc.encode_ordinary(text)  # warm-up
        best = float("inf")
        for _ in range(args.runs):
            t = time.perf_counter()
            enc.encode_ordinary(text)
            best = min(best, time.perf_counter() - t)
        print(f"tiktoken {tiktoken.__version__} cl100k encode_ordinary ({label}): {n_bytes} bytes, "
              f"{len(ids)} tokens, best {best * 1e3:.1f} ms = {n_bytes / best / 1e6:.1f} MB/s "
              f"= {n_bytes / best / 2**20:.1f} MiB/s")
        if args.write_ids and max_len == 256:
            Path(args.write_ids).write_text(json.dumps(ids))
        if args.write_text and max_len == 256:
            Path(args.write_text).write_bytes(text.encode("utf-8"))


if __name__ == "__main__":
    main()
