#!/usr/bin/env python3
"""The demo model shipped in models/: a tiny Phi-3-architecture model with Phi-4's vocabulary
that has learnt the first chapters of "Alice's Adventures in Wonderland" by heart.

    python tools/train_demo.py [--source alice29.txt] [--steps N]   # train, write models/phiq-demo.gguf,
                                                                    # then the golden reference
    python tools/train_demo.py --reference-only                     # only the reference JSON, from the GGUF

What it does, in order:

1. Text. Lewis Carroll, "Alice's Adventures in Wonderland" (1865; public domain), the Project
   Gutenberg "Millennium Fulcrum Edition 2.9" plain text as shipped in the Canterbury corpus
   file `alice29.txt`, taken from the PyPI source distribution of `brotli` 1.2.1
   (`tests/testdata/alice29.txt`, sha256 checked below). Without --source the script fetches it
   with `pip download --no-deps --no-binary :all: brotli==1.2.1`. Chapters I-II are kept,
   CRLF -> LF, every paragraph's hard-wrapped lines joined with single spaces, paragraphs
   separated by a blank line, Carroll's opening quote ` written as '.
2. Tokens: Phi-4's tokenizer (../shared/fixtures/tokenizer/phi-4-tokenizer.json, cl100k_base +
   Phi-4's added tokens), no BOS, as Phi-4 tokenizes.
3. Training (torch, CPU, 2 threads, fixed seeds, fixed step count): a transformers
   `Phi3ForCausalLM` with tied embeddings whose vocabulary is restricted to the ids that occur
   in the text. The loss is exactly the full-vocabulary cross-entropy of a model whose other
   100352 - n_used embedding rows are zero: those ids all have logit 0, so they enter the
   softmax as one extra column of value log(n_unused). Windows of SEQ_LEN tokens start at a
   paragraph start half of the time and at a random token otherwise, so that a prompt made of
   the first words of a passage, evaluated from position 0 with no context, continues it.
4. Check with the FULL vocabulary: the restricted embeddings are scattered into a 100352-row
   matrix (all other rows exactly zero), loaded into a full-size Phi3ForCausalLM, and every
   paragraph's first words are continued greedily; the share reproduced verbatim is reported.
5. GGUF: written by tools/tiny_models.py's writer exactly as llama.cpp's convert_hf_to_gguf.py
   writes a Phi3ForCausalLM (architecture `phi3`, tokenizer.* keys copied from
   ../shared/fixtures/vocab/ggml-vocab-phi-4.gguf, fused attn_qkv and ffn_up with gate rows
   first, no output.weight since the embeddings are tied), 2-D weights Q8_0 (gguf-py), norms F32.
6. Golden reference (tests/fixtures/reference/demo-greedy.json): the GGUF is read back with
   gguf-py, its Q8_0 weights dequantized to float32 and loaded into Phi3ForCausalLM (float32,
   eager attention), so transformers sees exactly the weights an engine reads; for each of
   PROMPTS, the prompt ids and GREEDY_NEW_TOKENS greedy ids, the decoded text and the top-1 -
   top-2 logit margin of every step.

Needs torch, transformers, tokenizers, numpy, gguf==0.19.0. Deterministic for a given torch
build and CPU: seeded, fixed thread count, fixed number of steps.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import Phi3Config, Phi3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_models as tm  # noqa: E402

REPO_ROOT = tm.REPO_ROOT
SHARED = os.path.join(REPO_ROOT, "..", "shared", "fixtures")
TOKENIZER_JSON = os.path.join(SHARED, "tokenizer", "phi-4-tokenizer.json")
OUT_GGUF = os.path.join(REPO_ROOT, "models", "phiq-demo.gguf")
OUT_REF = os.path.join(REPO_ROOT, "tests", "fixtures", "reference", "demo-greedy.json")

SOURCE_PACKAGE = "brotli==1.2.1"
SOURCE_MEMBER = "brotli-1.2.1/tests/testdata/alice29.txt"
SOURCE_SHA256 = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
CHAPTERS = 2  # chapters I..CHAPTERS are learnt

SPEC = tm.ModelSpec(
    name="phiq-demo",
    seed=0,  # unused: the weights are trained, not drawn
    hidden=128,
    n_layer=4,
    n_head=4,
    n_kv_head=2,
    ffn=512,
    rope_theta=10000.0,
    max_position_embeddings=512,
    original_max_position_embeddings=512,
    tie_word_embeddings=True,
)
GGUF_TYPE = "Q8_0"

SEED = 20250101
THREADS = 2
SEQ_LEN = 256
BATCH = 8
STEPS = 900
LR = 5e-3
WARMUP = 30
INIT_STD = 0.02

# The golden prompts: the first words of three passages of chapters I and II.
PROMPTS = [
    "Alice was beginning to get very tired of sitting by her sister",
    "Down, down, down. Would the fall NEVER come to an end!",
    "'Curiouser and curiouser!' cried Alice",
]
GREEDY_NEW_TOKENS = 64


# ---- the text ------------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_source(dest_dir: str) -> str:
    """alice29.txt out of brotli's sdist, fetched with pip (PyPI is reachable)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", SOURCE_PACKAGE, "-d", dest_dir], check=True)
    sdist = next(os.path.join(dest_dir, f) for f in os.listdir(dest_dir) if f.endswith(".tar.gz"))
    with tarfile.open(sdist) as tar:
        data = tar.extractfile(SOURCE_MEMBER).read()
    path = os.path.join(dest_dir, "alice29.txt")
    with open(path, "wb") as f:
        f.write(data)
    return path


def prepare_text(path: str) -> str:
    if sha256_file(path) != SOURCE_SHA256:
        raise SystemExit(f"{path}: not the expected alice29.txt (sha256 {SOURCE_SHA256})")
    raw = open(path, "rb").read().decode("ascii").replace("\r\n", "\n").rstrip("\x1a")
    lines = raw.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("CHAPTER ")]
    paragraphs, cur = [], []
    for line in lines[starts[0]:starts[CHAPTERS]]:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            paragraphs.append(" ".join(cur))
            cur = []
    if cur:
        paragraphs.append(" ".join(cur))
    paragraphs = [re.sub(r" {2,}", " ", p).replace("`", "'") for p in paragraphs]
    return "\n\n".join(paragraphs) + "\n"


def paragraph_token_starts(tok, text: str) -> list[int]:
    """Index of the token that begins each paragraph (each starts a pre-token: after "\n\n")."""
    enc = tok.encode(text, add_special_tokens=False)
    char_starts = {0} | {m.end() for m in re.finditer("\n\n", text)}
    starts = [i for i, (a, _) in enumerate(enc.offsets) if a in char_starts]
    assert len(starts) == len(char_starts - {len(text)}), "a paragraph does not start a token"
    return starts


def load_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(TOKENIZER_JSON)


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


# ---- models --------------------------------------------------------------------------------

def hf_config(vocab_size: int) -> Phi3Config:
    kw = tm.hf_config(SPEC)
    kw["vocab_size"] = vocab_size
    if vocab_size != SPEC.n_vocab:
        # the training model's restricted vocabulary has other ids: no special ids in it
        kw.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return Phi3Config(**kw)


def full_weights(small: Phi3ForCausalLM, used: np.ndarray) -> dict[str, np.ndarray]:
    """HF-named float32 weights of the full-vocabulary model, in the converter's tensor order.

    Embedding rows of ids that do not occur in the text are exactly zero.
    """
    sd = {k: v.detach().to(torch.float32).numpy().copy() for k, v in small.state_dict().items()}
    emb = np.zeros((SPEC.n_vocab, SPEC.hidden), dtype=np.float32)
    emb[used] = sd["model.embed_tokens.weight"]
    out = {"model.embed_tokens.weight": emb}
    for i in range(SPEC.n_layer):
        p = f"model.layers.{i}."
        for name in ("input_layernorm", "mlp.down_proj", "mlp.gate_up_proj",
                     "post_attention_layernorm", "self_attn.o_proj", "self_attn.qkv_proj"):
            out[p + name + ".weight"] = sd[p + name + ".weight"]
    out["model.norm.weight"] = sd["model.norm.weight"]
    return out


def build_full_model(weights: dict[str, np.ndarray]) -> Phi3ForCausalLM:
    config = hf_config(SPEC.n_vocab)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Phi3ForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    for name, p in model.named_parameters():
        src = weights["model.embed_tokens.weight" if name == "lm_head.weight" else name]
        assert np.array_equal(p.detach().numpy(), src), name
    model.eval()
    return model


# ---- training ------------------------------------------------------------------------------

def train(ids: list[int], paragraph_starts: list[int], used: np.ndarray, steps: int, log) -> tuple:
    n_used = len(used)
    local = {int(t): i for i, t in enumerate(used)}
    data = torch.tensor([local[t] for t in ids], dtype=torch.long)
    n = len(data)
    # the other ids: logit exactly 0 each, one softmax column worth log(n_unused)
    unused_col = math.log(SPEC.n_vocab - n_used)

    torch.manual_seed(SEED)
    config = hf_config(n_used)
    config._attn_implementation = "sdpa"
    config.initializer_range = INIT_STD
    model = Phi3ForCausalLM(config)
    model.train()
    log(f"training model: {sum(p.numel() for p in model.parameters())} parameters "
        f"(full-vocabulary model: {sum(p.numel() for p in model.parameters()) + (SPEC.n_vocab - n_used) * SPEC.hidden})")
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)

    def lr_at(step):
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        t = (step - WARMUP) / max(1, steps - WARMUP)
        return LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    gen = torch.Generator().manual_seed(SEED)
    para = torch.tensor(paragraph_starts, dtype=torch.long)
    t0 = time.time()
    history = []
    for step in range(steps):
        # half the windows start at a paragraph start, half at any token
        k = BATCH // 2
        starts = torch.cat([para[torch.randint(len(para), (k,), generator=gen)],
                            torch.randint(n - 1, (BATCH - k,), generator=gen)])
        x = torch.zeros((BATCH, SEQ_LEN), dtype=torch.long)
        y = torch.full((BATCH, SEQ_LEN), -100, dtype=torch.long)
        for b, s in enumerate(starts.tolist()):
            m = min(SEQ_LEN, n - 1 - s)
            x[b, :m] = data[s:s + m]
            y[b, :m] = data[s + 1:s + 1 + m]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model(input_ids=x).logits  # [B, T, n_used]
        logits = torch.cat([logits, torch.full_like(logits[..., :1], unused_col)], dim=-1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_used + 1), y.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            history.append((step, round(loss.item(), 5)))
            log(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step):.2e}  {time.time() - t0:6.1f} s")
    model.eval()
    return model, time.time() - t0, history


# ---- greedy --------------------------------------------------------------------------------

@torch.no_grad()
def greedy_full(model, prompt: list[int], n_new: int) -> tuple[list[int], list[float]]:
    """n_new argmax steps with the KV cache; returns the new ids and each step's top-1 - top-2."""
    gen = transformers.GenerationConfig(do_sample=False, max_new_tokens=n_new, min_new_tokens=0,
                                        eos_token_id=None, pad_token_id=100349,
                                        bos_token_id=None, use_cache=True,
                                        output_scores=True, return_dict_in_generate=True)
    out = model.generate(torch.tensor([prompt]), generation_config=gen)
    new = [int(t) for t in out.sequences[0, len(prompt):]]
    margins = []
    for s in out.scores:
        top = torch.topk(s[0].to(torch.float32), 2).values
        margins.append(float(top[0] - top[1]))
    assert len(new) == n_new
    return new, margins


def memorisation_report(model, tok, text: str, n_words: int = 6, n_new: int = 48) -> dict:
    """Continue the first n_words of every paragraph; how many continue verbatim for n_new ids."""
    paragraphs = [p for p in text.split("\n\n") if len(p.split()) > n_words]
    exact, chars_right, chars_total, worst = 0, 0, 0, []
    for p in paragraphs:
        prompt_text = " ".join(p.split()[:n_words])
        prompt = encode(tok, prompt_text)
        # compare decoded text, not ids: the prompt alone can tokenize differently at its end
        new, _ = greedy_full(model, prompt, n_new)
        got = tok.decode(prompt + new)
        start = text.index(p)
        want = text[start:start + len(got)]
        right = os.path.commonprefix([got, want])
        chars_total += len(got)
        chars_right += len(right)
        if got == want:
            exact += 1
        else:
            worst.append((len(right), prompt_text))
    worst.sort()
    return {"paragraphs": len(paragraphs), "verbatim": exact,
            "chars_right_share": round(chars_right / max(1, chars_total), 4),
            "first_failures": worst[:5]}


# ---- the golden reference --------------------------------------------------------------------

def load_gguf_weights(path: str) -> dict[str, np.ndarray]:
    """HF-named float32 weights, dequantized from the GGUF with gguf-py."""
    import gguf
    reader = gguf.GGUFReader(path)
    by_gguf = {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        by_gguf[t.name] = np.ascontiguousarray(arr.astype(np.float32))
    names = list(full_weights_names())
    out = {}
    for hf in names:
        g = tm.gguf_tensor_name(hf)
        out[hf] = by_gguf.pop(g)
    if by_gguf:
        raise RuntimeError(f"unexpected tensors in {path}: {sorted(by_gguf)}")
    return out


def full_weights_names():
    yield "model.embed_tokens.weight"
    for i in range(SPEC.n_layer):
        p = f"model.layers.{i}."
        for name in ("input_layernorm", "mlp.down_proj", "mlp.gate_up_proj",
                     "post_attention_layernorm", "self_attn.o_proj", "self_attn.qkv_proj"):
            yield p + name + ".weight"
    yield "model.norm.weight"


def reference(gguf_path: str, out_path: str, tok, text: str, log) -> dict:
    weights = load_gguf_weights(gguf_path)
    model = build_full_model(weights)
    cases = []
    for prompt_text in PROMPTS:
        prompt = encode(tok, prompt_text)
        new, margins = greedy_full(model, prompt, GREEDY_NEW_TOKENS)
        # teacher-forced check: one forward over prompt + generated gives the same argmax
        with torch.no_grad():
            logits = model(torch.tensor([prompt + new[:-1]]), use_cache=False).logits[0]
        tf = [int(x) for x in logits[len(prompt) - 1:].argmax(-1)]
        assert tf == new, "generate() differs from the teacher-forced argmax"
        continuation = tok.decode(new)
        start = text.index(prompt_text)
        expected = text[start + len(prompt_text):start + len(prompt_text) + len(continuation)]
        cases.append({
            "prompt": prompt_text,
            "prompt_ids": prompt,
            "new_ids": new,
            "text": continuation,
            "verbatim_from_source": continuation == expected,
            "min_top1_minus_top2": round(min(margins), 4),
            "top1_minus_top2": [round(m, 4) for m in margins],
        })
        log(f"{prompt_text!r} -> {continuation!r} (min margin {min(margins):.3f})")
    doc = {
        "model": "models/phiq-demo.gguf",
        "gguf_sha256": sha256_file(gguf_path),
        "gguf_size": os.path.getsize(gguf_path),
        "spec": {"architecture": "phi3", "n_vocab": SPEC.n_vocab, "hidden": SPEC.hidden,
                 "n_layer": SPEC.n_layer, "n_head": SPEC.n_head, "n_kv_head": SPEC.n_kv_head,
                 "ffn": SPEC.ffn, "context": SPEC.max_position_embeddings,
                 "rope_theta": SPEC.rope_theta, "tied_embeddings": True, "type": GGUF_TYPE},
        "source_text": "Lewis Carroll, Alice's Adventures in Wonderland (1865, public domain), "
                       "chapters I-II, from alice29.txt (brotli 1.2.1 sdist), as prepared by "
                       "tools/train_demo.py",
        "made_by": "tools/train_demo.py: transformers Phi3ForCausalLM (float32, eager attention) "
                   "with the GGUF's weights dequantized by gguf-py (gguf.quants.dequantize), "
                   "i.e. exactly the numbers the engine reads",
        "versions": versions(),
        "tokenization": "Phi-4 (../shared/fixtures/tokenizer/phi-4-tokenizer.json), no BOS, "
                        "special tokens not parsed (none occur)",
        "method": f"model.generate(do_sample=False, max_new_tokens={GREEDY_NEW_TOKENS}, "
                  "eos_token_id=None), KV cache on; equal to the argmax of one teacher-forced "
                  "forward over prompt + generated ids",
        "eos_note": f"no stop at any id: exactly {GREEDY_NEW_TOKENS} argmax steps",
        "margin_note": "top1_minus_top2 is the logit gap at each generation step (top logits are "
                       "~20-35); an engine whose logits differ from these by less than half the "
                       "smallest gap gives the same ids. Quantizing the activations to Q8_0 for the "
                       "matmuls, as llama.cpp does, moves these logits by up to ~0.6 (measured with "
                       "phiq over every column of the teacher-forced positions; an F32 file of the "
                       "same dequantized weights matches to 3e-5), well under half the smallest gap",
        "min_top1_minus_top2": round(min(c["min_top1_minus_top2"] for c in cases), 4),
        "greedy": cases,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return doc


def versions() -> dict:
    import gguf  # noqa: F401
    import tokenizers
    from importlib.metadata import version
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "numpy": np.__version__, "gguf": version("gguf")}


# ---- main ----------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="alice29.txt (default: fetched from brotli's sdist with pip)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", default=OUT_GGUF)
    ap.add_argument("--ref-out", default=OUT_REF)
    ap.add_argument("--reference-only", action="store_true",
                    help="skip training: write the reference JSON from the existing GGUF")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or fetch_source(tmp)
        text = prepare_text(source)
    tok = load_tokenizer()
    ids = encode(tok, text)
    assert tok.decode(ids) == text
    used = np.array(sorted(set(ids)), dtype=np.int64)
    log(f"text: {len(text)} chars, {len(ids)} tokens, {len(used)} distinct ids")

    if not args.reference_only:
        para_starts = paragraph_token_starts(tok, text)
        log(f"{len(para_starts)} paragraph starts; training {args.steps} steps of "
            f"{BATCH}x{SEQ_LEN} tokens")
        small, seconds, history = train(ids, para_starts, used, args.steps, log)
        log(f"training took {seconds:.0f} s, final loss {history[-1][1]}")

        weights = full_weights(small, used)
        full = build_full_model(weights)
        t0 = time.time()
        rep = memorisation_report(full, tok, text)
        log(f"full-vocabulary check (float32, {time.time() - t0:.0f} s): {rep}")

        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        tm.write_gguf(SPEC, GGUF_TYPE, args.out, weights=weights)
        log(f"{args.out}: {os.path.getsize(args.out)} bytes, sha256 {sha256_file(args.out)}")

    if not args.no_reference:
        t0 = time.time()
        doc = reference(args.out, args.ref_out, tok, text, log)
        log(f"{args.ref_out}: min top1-top2 margin {doc['min_top1_minus_top2']} "
            f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
