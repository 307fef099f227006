#!/usr/bin/env python3
"""Reference logits and greedy generations from transformers for the tiny models.

    python tools/ref_logits.py [OUTDIR]      (default: tests/fixtures/reference)

Builds the weights of tools/tiny_models.py (the very same float32 arrays that go into the
GGUF files), loads them into transformers' `Phi3ForCausalLM` (float32, eager attention),
and writes, per model:

  <model>.json              config, token ids of every sequence, what RoPE/LongRoPE
                            transformers applied (factors, inv_freq, attention factor), the
                            full-vocabulary argmax and top-1 margin of every position, the
                            f32-vs-f64 spread, the greedy generation, and the sha256 of every
                            GGUF that tiny_models.py writes for that model (so a test can tell
                            when its regenerated file no longer holds these weights)
  <model>.<seq>.logits.npy  float32 logits, shape [n_tokens, n_columns]

Only the float32 forward is the reference; a float64 run of the same model gives the size of
f32 rounding (`f32_vs_f64`), which tolerances can be derived from.

Needs torch, transformers, numpy, gguf (not needed by CI). Deterministic: no sampling;
torch runs single-threaded.
"""
import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_models as tm  # noqa: E402

REPO_ROOT = tm.REPO_ROOT
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "reference")

# A chat turn in Phi-4's template: <|im_start|>user<|im_sep|>Hello, world!.\n <|im_end|>
CHAT_IDS = [100264, 882, 100266, 9906, 11, 1917, 0, 13, 220, 100265]

# The prompt of ../shared/fixtures/templates (system "You are a helpful assistant.", user
# "Hello", generation prompt), as tokenized with special-token parsing.
GREEDY_PROMPT = [100264, 9125, 100266, 2675, 527, 264, 11190, 18328, 13, 100265, 100264, 882,
                 100266, 9906, 100265, 100264, 78191, 100266]
GREEDY_NEW_TOKENS = 64

# Long sequence for tiny-phi4-mini (past its original context of 64): a chat prompt (system
# "You are a helpful assistant.", then a user turn) whose user text is three cases of
# ../shared/fixtures/tokenizer/phi4-corpus.jsonl (tiktoken's ids, taken as they are there),
# followed by the generation prompt.
LONG_CORPUS_LINES = [7, 14, 18]
SYSTEM_THEN_USER = [100264, 9125, 100266, 2675, 527, 264, 11190, 18328, 13, 100265, 100264, 882, 100266]
GENERATION_PROMPT = [100265, 100264, 78191, 100266]
CORPUS = os.path.join(REPO_ROOT, "..", "shared", "fixtures", "tokenizer", "phi4-corpus.jsonl")

# Columns kept for sequences too long to store in full: every 64th vocabulary id. A forward
# pass error changes the final hidden state and so essentially every column; the full-
# vocabulary argmax of every position is kept in the JSON as well.
SUBSET_STRIDE = 64


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_model(spec: tm.ModelSpec, dtype=torch.float32):
    """Phi3ForCausalLM, or LlamaForCausalLM for the llama layout (its weights split as a
    Llama checkpoint holds them, before the converter's permutation)."""
    llama = spec.layout == "llama"
    config = (LlamaConfig if llama else Phi3Config)(**tm.hf_config(spec))
    config._attn_implementation = "eager"
    torch.manual_seed(0)  # the random init is overwritten below, but keep it reproducible
    model = (LlamaForCausalLM if llama else Phi3ForCausalLM)(config).to(dtype)
    weights = tm.llama_weights(spec) if llama else tm.hf_weights(spec)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"unexpected tensors {unexpected}")
    allowed_missing = {"lm_head.weight"} if spec.tie_word_embeddings else set()
    if set(missing) - allowed_missing:
        raise RuntimeError(f"missing tensors {missing}")
    if spec.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), \
            "lm_head is not tied to embed_tokens"
    # every parameter must be exactly the generated array (cast to dtype)
    for name, p in model.named_parameters():
        src = weights["model.embed_tokens.weight" if name == "lm_head.weight" and spec.tie_word_embeddings else name]
        assert np.array_equal(p.detach().to(torch.float32).numpy(), src), name
    model.eval()
    return model


class RopeProbe:
    """Records the inv_freq and attention scaling the rotary embedding used in a forward."""

    def __init__(self, model):
        self.rotary = model.model.rotary_emb
        self.handle = self.rotary.register_forward_hook(self.hook, with_kwargs=True)
        self.calls = []

    def hook(self, module, args, kwargs, output):
        position_ids = kwargs["position_ids"] if "position_ids" in kwargs else args[1]
        self.calls.append({
            "max_position": int(position_ids.max()),
            "inv_freq": [float(x) for x in module.inv_freq.detach().to(torch.float32).cpu()],
            "attention_scaling": float(module.attention_scaling),
        })


def forward_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


def position_summary(logits: np.ndarray) -> dict:
    top2 = np.argsort(-logits, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(logits))
    margin = logits[rows, top2[:, 0]] - logits[rows, top2[:, 1]]
    return {
        "argmax": [int(x) for x in top2[:, 0]],
        "top1_minus_top2": [round(float(x), 6) for x in margin],
        "logit_std": round(float(logits.std()), 4),
        "logit_max_abs": round(float(np.abs(logits).max()), 4),
    }


def rope_report(spec: tm.ModelSpec, calls: list, seq_len: int) -> dict:
    call = calls[-1]
    rep = {
        "rope_theta": spec.rope_theta,
        "rope_dim": spec.rope_dim,
        "head_dim": spec.head_dim,
        "style": "NEOX (rotate_half: pairs (i, i + rope_dim/2)) on the first rope_dim dims of "
                 "each q/k head; dims rope_dim..head_dim pass through",
        "seq_len": seq_len,
        "inv_freq_used": call["inv_freq"],
        "attention_scaling": call["attention_scaling"],
    }
    if spec.layout == "llama":
        rep["style"] = ("rotate_half on LlamaForCausalLM's q_proj/k_proj outputs; the GGUF holds "
                        "those rows permuted (convert_hf_to_gguf's LlamaModel.permute) for ggml's "
                        "normal RoPE, adjacent pairs")
    if spec.rope_linear_factor is not None:
        rep["type"] = "linear"
        rep["factor"] = spec.rope_linear_factor
        rep["inv_freq_formula"] = "1 / theta^(2i/rope_dim) / factor, computed in float32"
        return rep
    factors = tm.rope_factors(spec)
    if factors is None:
        rep["type"] = "default"
        rep["inv_freq_formula"] = "1 / theta^(2i/rope_dim), computed in float32"
        return rep
    short, long = factors
    used = "long" if seq_len > spec.original_max_position_embeddings else "short"
    # check that transformers did what we say it did
    dim = spec.rope_dim
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    expect = 1.0 / (torch.tensor(long if used == "long" else short, dtype=torch.float32) * spec.rope_theta ** shape)
    assert np.array_equal(expect.numpy(), np.array(call["inv_freq"], dtype=np.float32)), "inv_freq mismatch"
    assert abs(call["attention_scaling"] - spec.attn_factor) < 1e-12, "attention factor mismatch"
    rep.update({
        "type": "longrope",
        "original_max_position_embeddings": spec.original_max_position_embeddings,
        "max_position_embeddings": spec.max_position_embeddings,
        "factors_used": used,
        "rule": "transformers: long factors when seq_len = max(position_ids)+1 > "
                "original_max_position_embeddings, else short; one choice for the whole forward",
        "short_factor": short,
        "long_factor": long,
        "inv_freq_formula": "1 / (factor[i] * theta^(2i/rope_dim)), computed in float32",
        "attention_factor_formula": "sqrt(1 + ln(max_pos/orig) / ln(orig)) = sqrt(1 + ln(4)/ln(64)); "
                                    "multiplies cos and sin (so q.k by its square), applied for "
                                    "short AND long factors",
    })
    return rep


def run_sequence(spec, model_f32, model_f64, ids, store_columns):
    probe = RopeProbe(model_f32)
    logits = forward_logits(model_f32, ids)
    probe.handle.remove()
    logits64 = forward_logits(model_f64, ids)
    diff = np.abs(logits.astype(np.float64) - logits64)
    entry = {
        "ids": ids,
        "n_tokens": len(ids),
        "rope": rope_report(spec, probe.calls, len(ids)),
        "positions": position_summary(logits),
        "f32_vs_f64": {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "note": "transformers float32 vs the same model run in float64: the size of f32 rounding",
        },
    }
    if isinstance(store_columns, str) and store_columns == "all":
        stored = logits
        entry["columns"] = "all"
    else:
        stored = np.ascontiguousarray(logits[:, store_columns])
        entry["columns"] = f"range(0, {spec.n_vocab}, {SUBSET_STRIDE})"
        entry["n_columns"] = int(stored.shape[1])
    return entry, stored.astype(np.float32)


# Positions past 16k: a prefix of FAR_PREFIX corpus ids (phi4-corpus.jsonl lines repeated),
# then CHAT_IDS; only the logits of the last len(CHAT_IDS) positions are kept.
FAR_PREFIX = 16_500


def far_ids():
    with open(CORPUS, encoding="utf-8") as f:
        corpus = [i for line in f for i in json.loads(line)["ids"]]
    prefix = (corpus * (FAR_PREFIX // len(corpus) + 1))[:FAR_PREFIX]
    return prefix + CHAT_IDS


def far_logits(model, ids, n_last, chunk=512):
    """Logits of the last n_last positions of ids, evaluated in chunks through the KV cache
    (a full forward would hold [n, n] attention scores per head)."""
    cache = transformers.DynamicCache()
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            out = model(torch.tensor([part]), past_key_values=cache, use_cache=True,
                        position_ids=torch.arange(start, start + len(part))[None])
            cache = out.past_key_values
    logits = out.logits[0].to(torch.float32).numpy()
    assert len(ids) % chunk >= n_last or len(ids) % chunk == 0
    return logits[-n_last:]


def greedy(spec, model, prompt, n_new):
    # eos would stop generate() early; the reference is n_new pure argmax steps
    gen = transformers.GenerationConfig(do_sample=False, max_new_tokens=n_new, min_new_tokens=0,
                                        eos_token_id=None, pad_token_id=spec.n_vocab - 3,
                                        bos_token_id=None, use_cache=True)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), generation_config=gen)
    ids = [int(x) for x in out[0]]
    new = ids[len(prompt):]
    assert len(new) == n_new
    # teacher-forced check: one forward over prompt+generated gives the same argmax
    logits = forward_logits(model, ids[:-1])[len(prompt) - 1:]
    summ = position_summary(logits)
    assert summ["argmax"] == new, "greedy generate() differs from teacher-forced argmax"
    return {
        "prompt_ids": prompt,
        "new_ids": new,
        "method": f"model.generate(do_sample=False, max_new_tokens={n_new}, eos_token_id=None), "
                  "KV cache on; equal to the argmax of one teacher-forced forward",
        "eos_note": "generation does not stop at <|im_end|> (100265) or any other id: exactly "
                    f"{n_new} argmax steps",
        "min_top1_minus_top2": min(summ["top1_minus_top2"]),
        "top1_minus_top2": summ["top1_minus_top2"],
    }


def long_ids():
    with open(CORPUS, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]
    body = [i for n in LONG_CORPUS_LINES for i in cases[n]["ids"]]
    text = "".join(cases[n]["text"] for n in LONG_CORPUS_LINES)
    return SYSTEM_THEN_USER + body + GENERATION_PROMPT, text


def gguf_hashes(spec: tm.ModelSpec) -> dict:
    weights = tm.hf_weights(spec)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        # the llama-layout models are written (and tested) in F32 only
        for t in ["F32"] if spec.layout == "llama" else tm.TYPES:
            p = os.path.join(d, f"{spec.name}-{t}.gguf")
            tm.write_gguf(spec, t, p, weights=weights)
            out[f"{spec.name}-{t}.gguf"] = {"sha256": sha256(p), "bytes": os.path.getsize(p)}
            os.remove(p)
    return out


def versions() -> dict:
    import gguf
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf")}


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--models", default="tiny-phi4,tiny-phi4-mini,tiny-phi4-swa,tiny-phi4-llama,"
                    "tiny-llama-linear,tiny-phi4-reasoning",
                    help="comma-separated subset to (re)compute")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.outdir, exist_ok=True)

    lids, ltext = long_ids()
    plan = {
        "tiny-phi4": [("chat", CHAT_IDS, "all")],
        "tiny-phi4-mini": [("short", CHAT_IDS, "all"), ("long", lids, "subset")],
        "tiny-phi4-swa": [("chat", CHAT_IDS, "subset")],
        "tiny-phi4-llama": [("chat", CHAT_IDS, "subset")],
        "tiny-llama-linear": [("chat", CHAT_IDS, "subset")],
        "tiny-phi4-reasoning": [("chat", CHAT_IDS, "subset")],
    }
    for name, seqs in plan.items():
        if name not in args.models.split(","):
            continue
        spec = tm.MODELS[name]
        m32 = build_model(spec, torch.float32)
        m64 = build_model(spec, torch.float64)
        doc = {
            "model": name,
            "made_by": "python tools/ref_logits.py (see README.md)",
            "versions": versions(),
            "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
            "hf_config": tm.hf_config(spec),
            "gguf_files": gguf_hashes(spec),
            "sequences": {},
        }
        for seq_name, ids, cols in seqs:
            columns = "all" if cols == "all" else np.arange(0, spec.n_vocab, SUBSET_STRIDE)
            entry, stored = run_sequence(spec, m32, m64, ids, columns)
            fname = f"{name}.{seq_name}.logits.npy"
            np.save(os.path.join(args.outdir, fname), stored)
            entry["logits_file"] = fname
            entry["logits_shape"] = list(stored.shape)
            doc["sequences"][seq_name] = entry
            print(f"{name}.{seq_name}: {len(ids)} ids, rope {entry['rope'].get('factors_used', 'default')}, "
                  f"f32-f64 max {entry['f32_vs_f64']['max_abs_diff']:.2e}, "
                  f"min margin {min(entry['positions']['top1_minus_top2']):.4f}", file=sys.stderr)
            if seq_name == "long":
                entry["made_from"] = (f"system+user chat prefix, the ids of phi4-corpus.jsonl lines "
                                      f"{LONG_CORPUS_LINES} (0-based), then <|im_end|><|im_start|>assistant<|im_sep|>")
                entry["user_text"] = ltext
        if name == "tiny-phi4-swa":
            # The window must act: positions < 4 see their whole past and equal tiny-phi4's
            # logits, later ones do not.
            full = forward_logits(build_model(tm.MODELS["tiny-phi4"], torch.float32), CHAT_IDS)
            swa = forward_logits(m32, CHAT_IDS)
            d = np.abs(full - swa).max(axis=1)
            assert d[:4].max() < 1e-5 and d[4:].min() > 1e-3, d
            doc["sequences"]["chat"]["max_abs_diff_vs_no_window"] = [float(x) for x in d]
        if name == "tiny-phi4-reasoning":
            ids = far_ids()
            cols = np.arange(0, spec.n_vocab, SUBSET_STRIDE)
            probe = RopeProbe(m32)
            last = far_logits(m32, ids, len(CHAT_IDS))
            probe.handle.remove()
            last64 = far_logits(m64, ids, len(CHAT_IDS))
            stored = np.ascontiguousarray(last[:, cols]).astype(np.float32)
            fname = f"{name}.far.logits.npy"
            np.save(os.path.join(args.outdir, fname), stored)
            doc["sequences"]["far"] = {
                "ids": ids,
                "n_tokens": len(ids),
                "made_from": f"the ids of phi4-corpus.jsonl, all lines in order, repeated and cut "
                             f"to {FAR_PREFIX}, then the chat ids",
                "logits_rows": f"the last {len(CHAT_IDS)} positions ({len(ids) - len(CHAT_IDS)}.."
                               f"{len(ids) - 1}), evaluated through the KV cache in chunks of 512",
                "columns": f"range(0, {spec.n_vocab}, {SUBSET_STRIDE})",
                "logits_file": fname,
                "logits_shape": list(stored.shape),
                "inv_freq_used": probe.calls[-1]["inv_freq"],
                "positions": position_summary(last),
                "f32_vs_f64": {"max_abs_diff": float(np.abs(last.astype(np.float64) - last64).max())},
            }
            print(f"{name}.far: {len(ids)} ids, f32-f64 max "
                  f"{doc['sequences']['far']['f32_vs_f64']['max_abs_diff']:.2e}", file=sys.stderr)
        if name == "tiny-phi4":
            g = greedy(spec, m32, GREEDY_PROMPT, GREEDY_NEW_TOKENS)
            doc["greedy"] = g
            print(f"{name} greedy: {g['new_ids'][:12]}... min margin {g['min_top1_minus_top2']:.4f}",
                  file=sys.stderr)
        with open(os.path.join(args.outdir, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
