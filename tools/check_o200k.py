#!/usr/bin/env python3
"""Checks phiq's "gpt-4o" pre-tokenizer (o200k, Phi-4-mini's family) against tiktoken.

No o200k GGUF ships with the fixtures (it would be 13 MB), so this script makes one the
way the Phi-4 fixture was made (../shared/fixtures/README.md): o200k_base's ranks from the
npm package `tiktoken`, tokens in GPT-2's byte alphabet, merges recovered from the ranks
(every split of a token into two tokens, ordered by the merged token's rank, as
transformers' TikTokenConverter does), `tokenizer.ggml.pre = "gpt-4o"`. Then it compares
`phiq tokenize --ids` with tiktoken's `encode_ordinary` on the 150 corpus texts and the 46
llama.cpp test strings.

Usage (one venv with gguf-py, numpy and tiktoken; a release build of phiq):
    python3 -m venv target/o200k && target/o200k/bin/pip install gguf==0.19.0 numpy tiktoken
    (cd target && npm pack tiktoken@1.0.22 && tar xzf tiktoken-1.0.22.tgz)
    cargo build --release
    target/o200k/bin/python tools/check_o200k.py target/package/encoders/o200k_base.json ../shared/fixtures
"""

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import tiktoken


def load_ranks(npm_json):
    data = json.loads(Path(npm_json).read_text())
    ranks = {}
    for line in data["bpe_ranks"].split("\n"):
        if line:
            _, offset, *tokens = line.split(" ")
            for i, token in enumerate(tokens):
                ranks[base64.b64decode(token)] = int(offset) + i
    return data["pat_str"], ranks


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_gguf(path, ranks):
    b2u = bytes_to_unicode()
    enc = lambda b: "".join(b2u[x] for x in b)  # noqa: E731
    n_vocab = max(ranks.values()) + 1
    tokens = [f"<|reserved_{i}|>" for i in range(n_vocab)]
    types = [3] * n_vocab
    for b, r in ranks.items():
        tokens[r] = enc(b)
        types[r] = 1
    merges = []
    for token, rank in ranks.items():
        local = [(token[:k], token[k:], rank) for k in range(1, len(token)) if token[:k] in ranks and token[k:] in ranks]
        local.sort(key=lambda m: (ranks[m[0]], ranks[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-4o")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([enc(l) + " " + enc(r) for l, r, _ in merges])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    npm_json, fixtures = sys.argv[1], Path(sys.argv[2])
    pat_str, ranks = load_ranks(npm_json)
    enc = tiktoken.Encoding("o200k", pat_str=pat_str, mergeable_ranks=ranks, special_tokens={})
    texts = [json.loads(l)["text"] for l in (fixtures / "tokenizer/phi4-corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    inp = (fixtures / "vocab/ggml-vocab-phi-4.gguf.inp").read_text(encoding="utf-8")
    texts += inp.split("\n__ggml_vocab_test__\n")[:-1]
    phiq = Path(__file__).resolve().parent.parent / "target/release/phiq"
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "o200k.gguf"
        write_gguf(vocab, ranks)
        equal = 0
        for text in texts:
            path = Path(tmp) / "text.txt"
            path.write_bytes(text.encode("utf-8"))
            out = subprocess.run([str(phiq), "tokenize", "-m", str(vocab), "--ids", "--file", str(path)], capture_output=True, check=True)
            got, want = json.loads(out.stdout), enc.encode_ordinary(text)
            if got == want:
                equal += 1
            else:
                print(f"differs: {text[:60]!r}\n  tiktoken {want[:16]}\n  phiq     {got[:16]}")
    print(f"{equal} of {len(texts)} equal to tiktoken o200k")
    sys.exit(0 if equal == len(texts) else 1)


if __name__ == "__main__":
    main()
