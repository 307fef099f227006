#!/usr/bin/env python3
"""Tiny random Phi-4-shaped models, written as GGUF exactly as llama.cpp converts Phi3ForCausalLM.

    python tools/tiny_models.py OUTDIR [--models tiny-phi4,tiny-phi4-mini] [--types F32,F16,...]

writes OUTDIR/<model>-<type>.gguf for every model and type. Same inputs give byte-identical
files: the weights come from numpy's default_rng seeded per model and per tensor name, and
gguf-py's writer adds no timestamps.

The weights are generated in Hugging Face's layout (`model.layers.N.self_attn.qkv_proj.weight`
[out, in], ...) by `hf_weights()`; `tools/ref_logits.py` loads exactly those arrays into
transformers' `Phi3ForCausalLM`, so the GGUF files and the transformers reference hold the
same numbers (up to the GGUF type's rounding).

What "as llama.cpp converts it" means here (convert_hf_to_gguf.py, class Phi3MiniModel):
- metadata keys, types and order: `general.architecture`, (LongRoPE only)
  `phi3.rope.scaling.attn_factor`, `general.type`, `general.name`, the `phi3.*`
  hyper-parameters in set_gguf_parameters' order, the tokenizer keys, and
  `general.quantization_version`;
- `phi3.rope.dimension_count = int(partial_rotary_factor * hidden) // n_head`;
- LongRoPE: `phi3.rope.scaling.attn_factor = sqrt(1 + ln(scale) / ln(original_context))`
  with scale = context_length / original_context_length, and the tensors
  `rope_factors_long.weight` / `rope_factors_short.weight` (F32, rope_dim/2 each) written
  first, as the converter's generate_extra_tensors yields them first;
- the other tensors in the order the converter reads them from safetensors (sorted HF
  names: lm_head, embed_tokens, per layer input_layernorm, mlp.down_proj, mlp.gate_up_proj,
  post_attention_layernorm, self_attn.o_proj, self_attn.qkv_proj, then model.norm), renamed
  to ggml's names (`output`, `token_embd`, `blk.N.attn_norm`, `blk.N.ffn_down`,
  `blk.N.ffn_up`, `blk.N.ffn_norm`, `blk.N.attn_output`, `blk.N.attn_qkv`, `output_norm`);
  `output.weight` is absent when the embeddings are tied (HF saves no lm_head then);
- norms and rope factors are always F32; every 2-D weight is in the requested type
  (like `llama-quantize --pure`: llama-quantize without --pure would bump output.weight or
  token_embd to Q6_K/Q8_0 for the legacy types; these files keep one type so a test knows
  exactly what it reads);
- the tokenizer keys (`tokenizer.*`) are copied value by value, type by type, from
  ../shared/fixtures/vocab/ggml-vocab-phi-4.gguf, so the models carry Phi-4's real
  100352-token vocabulary, merges and chat template.

Needs only numpy and gguf (gguf==0.19.0, tools/requirements-ci.txt).
"""
import argparse
import math
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT, LlamaFileType as FT

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_VOCAB = os.path.join(REPO_ROOT, "..", "shared", "fixtures", "vocab", "ggml-vocab-phi-4.gguf")

# GGUF type name -> (ggml tensor type, general.file_type)
TYPES = {
    "F32": (QT.F32, FT.ALL_F32),
    "F16": (QT.F16, FT.MOSTLY_F16),
    "BF16": (QT.BF16, FT.MOSTLY_BF16),
    "Q8_0": (QT.Q8_0, FT.MOSTLY_Q8_0),
    "Q4_0": (QT.Q4_0, FT.MOSTLY_Q4_0),
    "Q4_1": (QT.Q4_1, FT.MOSTLY_Q4_1),
    "Q5_0": (QT.Q5_0, FT.MOSTLY_Q5_0),
    "Q5_1": (QT.Q5_1, FT.MOSTLY_Q5_1),
}

# Standard deviations of the random weights. Chosen so that the model does something
# measurable rather than mimicking a trained model's 0.02: with hidden 256 and RMS-normed
# inputs of unit scale, a row of std s gives outputs of std 16*s. q and k elements then have
# std ~1.6, so q.k/sqrt(head_dim) has std ~2.5 and attention is clearly position dependent
# (a RoPE mistake changes the logits); logits have std ~2.4, so the softmax over 100352 ids
# is peaked and the top-1 is well separated, and quantization error shows up in the KL.
STD = {
    "embed_tokens": 0.15,
    "lm_head": 0.15,
    "qkv_proj": 0.10,
    "o_proj": 0.05,
    "gate_up_proj": 0.08,
    "down_proj": 0.04,
}
NORM_STD = 0.1  # norm weights are 1 + NORM_STD * normal


@dataclass(frozen=True)
class ModelSpec:
    name: str
    seed: int
    n_vocab: int = 100352
    hidden: int = 256
    n_layer: int = 2
    n_head: int = 8
    n_kv_head: int = 2
    ffn: int = 512
    rope_theta: float = 250000.0
    partial_rotary_factor: float = 1.0
    max_position_embeddings: int = 4096
    original_max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    rms_norm_eps: float = 1e-5
    sliding_window: int | None = None  # None -> GGUF 0, as the converter writes for Phi-4
    longrope: bool = False
    # "phi3": Phi3ForCausalLM, converted as Phi3MiniModel (fused qkv and gate_up, NeoX RoPE);
    # "llama": the same weights as a Llama checkpoint (LlamaForCausalLM: q/k/v and gate/up
    # split, as unsloth's Llama-ified Phi-4 holds them), converted as LlamaModel (llama.*
    # keys, attn_q/attn_k/attn_v, ffn_gate/ffn_up, Q and K rows permuted for ggml's normal
    # RoPE).
    layout: str = "phi3"
    # Linear RoPE scaling (llama only): positions divided by this factor.
    rope_linear_factor: float | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_head

    @property
    def rope_dim(self) -> int:
        # exactly the converter's formula
        return int(self.partial_rotary_factor * self.hidden) // self.n_head

    @property
    def rope_scale(self) -> float:
        return self.max_position_embeddings / self.original_max_position_embeddings

    @property
    def attn_factor(self) -> float:
        """LongRoPE attention factor as convert_hf_to_gguf and transformers compute it."""
        s = self.rope_scale
        if s <= 1.0:
            return 1.0
        return math.sqrt(1 + math.log(s) / math.log(self.original_max_position_embeddings))


MODELS = {
    # Phi-4 (14B) scaled down: GQA 4:1, full rotary, rope base 250000, no LongRoPE,
    # untied output, sliding_window 0.
    "tiny-phi4": ModelSpec(name="tiny-phi4", seed=4_000_001),
    # Phi-4-mini-like: partial rotary 0.75 (24 of 32 dims), LongRoPE with distinct
    # short/long factors, original context 64 and context 256 (a test passes the original
    # context with ~100 tokens), tied embeddings, rope base 10000 as Phi-4-mini.
    "tiny-phi4-mini": ModelSpec(
        name="tiny-phi4-mini",
        seed=4_000_002,
        rope_theta=10000.0,
        partial_rotary_factor=0.75,
        max_position_embeddings=256,
        original_max_position_embeddings=64,
        tie_word_embeddings=True,
        longrope=True,
    ),
    # tiny-phi4's weights (same seed) with a sliding window of 4 keys (Phi-3-mini has
    # 2047): only the F32 file is used, to test the window against transformers.
    "tiny-phi4-swa": ModelSpec(name="tiny-phi4-swa", seed=4_000_001, sliding_window=4),
    # Phi-4-reasoning's RoPE and context (rope base 500000, 32768 positions, no LongRoPE),
    # small (hidden 64, tied): tested at positions past 16k.
    "tiny-phi4-reasoning": ModelSpec(
        name="tiny-phi4-reasoning", seed=4_000_005, hidden=64, n_head=4, n_kv_head=2, ffn=128,
        rope_theta=500000.0, max_position_embeddings=32768,
        original_max_position_embeddings=32768, tie_word_embeddings=True,
    ),
    # tiny-phi4's weights (same seed) in a Llama checkpoint's layout and llama's GGUF
    # layout: must give tiny-phi4's logits.
    "tiny-phi4-llama": ModelSpec(name="tiny-phi4-llama", seed=4_000_001, layout="llama"),
    # A smaller llama with linear RoPE scaling (factor 4), tied embeddings and GQA 2:1.
    "tiny-llama-linear": ModelSpec(
        name="tiny-llama-linear", seed=4_000_004, layout="llama", hidden=64, n_head=4,
        n_kv_head=2, ffn=128, rope_theta=10000.0, tie_word_embeddings=True,
        rope_linear_factor=4.0,
    ),
}


def _rng(spec: ModelSpec, tensor_name: str) -> np.random.Generator:
    """One independent, reproducible stream per (model, tensor)."""
    return np.random.default_rng([spec.seed, zlib.crc32(tensor_name.encode())])


def rope_factors(spec: ModelSpec) -> tuple[list[float], list[float]] | None:
    """LongRoPE (short, long) factors, rope_dim/2 each, as float32-exact Python floats.

    Shaped like Phi-4-mini's: short factors near 1, long factors growing from 1 to about
    the context scale across the frequency bands, with a little jitter so no two are equal.
    """
    if not spec.longrope:
        return None
    n = spec.rope_dim // 2
    rng = _rng(spec, "rope_factors")
    short = 1.0 + 0.25 * np.sort(rng.random(n))
    long = np.geomspace(1.0, 4.0 * spec.rope_scale, n) * (1.0 + 0.05 * rng.random(n))
    # float32-exact so transformers (which builds a float32 tensor from the list) and the
    # GGUF's F32 tensors hold the very same numbers
    as_f32 = lambda a: [float(x) for x in a.astype(np.float32)]  # noqa: E731
    return as_f32(short), as_f32(long)


def hf_config(spec: ModelSpec) -> dict:
    """Keyword arguments for transformers' Phi3Config, or LlamaConfig for the llama layout
    (transformers 5 naming)."""
    common = dict(
        vocab_size=spec.n_vocab,
        hidden_size=spec.hidden,
        intermediate_size=spec.ffn,
        num_hidden_layers=spec.n_layer,
        num_attention_heads=spec.n_head,
        num_key_value_heads=spec.n_kv_head,
        hidden_act="silu",
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=spec.rms_norm_eps,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=100257,
        eos_token_id=100265,
        pad_token_id=100349,
    )
    if spec.layout == "llama":
        rope = {"rope_type": "default", "rope_theta": spec.rope_theta}
        if spec.rope_linear_factor is not None:
            rope.update(rope_type="linear", factor=spec.rope_linear_factor)
        return dict(common, head_dim=spec.head_dim, rope_parameters=rope, attention_bias=False,
                    mlp_bias=False)
    rope = {"rope_type": "default", "rope_theta": spec.rope_theta,
            "partial_rotary_factor": spec.partial_rotary_factor}
    factors = rope_factors(spec)
    if factors is not None:
        rope.update(rope_type="longrope", short_factor=factors[0], long_factor=factors[1])
    return dict(common, original_max_position_embeddings=spec.original_max_position_embeddings,
                rope_parameters=rope, sliding_window=spec.sliding_window)


def hf_weights(spec: ModelSpec) -> dict[str, np.ndarray]:
    """The model's weights, float32, by Hugging Face name and in HF layout ([out, in])."""
    h, hd = spec.hidden, spec.head_dim
    shapes: dict[str, tuple[int, ...]] = {}
    if not spec.tie_word_embeddings:
        shapes["lm_head.weight"] = (spec.n_vocab, h)
    shapes["model.embed_tokens.weight"] = (spec.n_vocab, h)
    for i in range(spec.n_layer):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "mlp.down_proj.weight"] = (h, spec.ffn)
        shapes[p + "mlp.gate_up_proj.weight"] = (2 * spec.ffn, h)  # [gate; up]
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.o_proj.weight"] = (h, spec.n_head * hd)
        shapes[p + "self_attn.qkv_proj.weight"] = ((spec.n_head + 2 * spec.n_kv_head) * hd, h)  # [q; k; v]
    shapes["model.norm.weight"] = (h,)

    weights = {}
    for name, shape in shapes.items():
        rng = _rng(spec, name)
        z = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 1:
            w = np.float32(1.0) + np.float32(NORM_STD) * z
        else:
            kind = name.split(".")[-2]
            w = np.float32(STD[kind]) * z
        weights[name] = w.astype(np.float32, copy=False)
    return weights


def llama_weights(spec: ModelSpec) -> dict[str, np.ndarray]:
    """`hf_weights` as a Llama checkpoint holds them: qkv_proj split into q_proj, k_proj,
    v_proj and gate_up_proj into gate_proj, up_proj, in sorted name order (the order the
    converter reads safetensors in)."""
    q_dim, kv_dim = spec.n_head * spec.head_dim, spec.n_kv_head * spec.head_dim
    out = {}
    for name, w in hf_weights(spec).items():
        if name.endswith("self_attn.qkv_proj.weight"):
            p = name[: -len("qkv_proj.weight")]
            out[p + "q_proj.weight"] = w[:q_dim]
            out[p + "k_proj.weight"] = w[q_dim:q_dim + kv_dim]
            out[p + "v_proj.weight"] = w[q_dim + kv_dim:]
        elif name.endswith("mlp.gate_up_proj.weight"):
            p = name[: -len("gate_up_proj.weight")]
            out[p + "gate_proj.weight"] = w[:spec.ffn]
            out[p + "up_proj.weight"] = w[spec.ffn:]
        else:
            out[name] = w
    return {k: np.ascontiguousarray(out[k]) for k in sorted(out)}


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: reorders each head's rows so that
    ggml's normal RoPE (adjacent pairs) equals transformers' rotate_half."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def gguf_tensor_name(hf_name: str) -> str:
    fixed = {
        "lm_head.weight": "output.weight",
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module...>.weight
    per_layer = {
        "input_layernorm": "attn_norm",
        "mlp.down_proj": "ffn_down",
        "mlp.gate_up_proj": "ffn_up",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.o_proj": "attn_output",
        "self_attn.qkv_proj": "attn_qkv",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
    }
    return f"blk.{parts[2]}.{per_layer['.'.join(parts[3:-1])]}.weight"


# ---- the tokenizer keys of the vocab GGUF ----------------------------------------------------

_SCALARS = {VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I",
            VT.INT32: "<i", VT.FLOAT32: "<f", VT.BOOL: "<?", VT.UINT64: "<Q", VT.INT64: "<q",
            VT.FLOAT64: "<d"}


def read_metadata(path: str) -> list[tuple[str, object, VT, VT | None]]:
    """(key, value, type, array item type) for every key of a GGUF v3 file, in file order.

    A small direct parser: gguf.GGUFReader takes ~7 s on the 6 MB vocab file because it
    makes a numpy view for every one of its 333730 strings; this takes well under a second.
    The file is the project's own read-only fixture, so only its framing is checked.
    """
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] != 3:
        raise ValueError(f"{path}: not a little-endian GGUF v3 file")
    n_kv = struct.unpack_from("<Q", buf, 16)[0]
    pos = 24

    def string() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        s = buf[pos + 8: pos + 8 + n]
        pos += 8 + n
        return s.decode("utf-8")

    def scalar(vt: VT):
        nonlocal pos
        fmt = _SCALARS[vt]
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    out = []
    for _ in range(n_kv):
        key = string()
        vt = VT(scalar(VT.UINT32))
        sub = None
        if vt == VT.STRING:
            val = string()
        elif vt == VT.ARRAY:
            sub = VT(scalar(VT.UINT32))
            n = scalar(VT.UINT64)
            if sub == VT.STRING:
                val = [string() for _ in range(n)]
            elif sub in _SCALARS:
                dt = np.dtype(_SCALARS[sub])
                val = np.frombuffer(buf, dtype=dt, count=n, offset=pos).tolist()
                pos += n * dt.itemsize
            else:
                raise ValueError(f"{path}: key {key}: nested arrays are not expected here")
        else:
            val = scalar(vt)
        out.append((key, val, vt, sub))
    return out


_tokenizer_cache: dict[str, list] = {}


def tokenizer_keys(vocab_path: str) -> list[tuple[str, object, VT, VT | None]]:
    if vocab_path not in _tokenizer_cache:
        kvs = [kv for kv in read_metadata(vocab_path) if kv[0].startswith("tokenizer.")]
        tokens = next(v for k, v, _, _ in kvs if k == "tokenizer.ggml.tokens")
        if len(tokens) != 100352:
            raise ValueError(f"{vocab_path}: expected Phi-4's 100352 tokens, found {len(tokens)}")
        _tokenizer_cache[vocab_path] = kvs
    return _tokenizer_cache[vocab_path]


# ---- writing ---------------------------------------------------------------------------------

def to_type(w: np.ndarray, qtype: QT) -> np.ndarray:
    return gguf.quants.quantize(w, qtype)


def write_gguf(spec: ModelSpec, type_name: str, path: str, vocab_path: str = DEFAULT_VOCAB,
               weights: dict[str, np.ndarray] | None = None) -> None:
    qtype, ftype = TYPES[type_name]
    if spec.layout == "llama":
        write_llama_gguf(spec, qtype, ftype, path, vocab_path)
        return
    if weights is None:
        weights = hf_weights(spec)
    arch = "phi3"
    w = gguf.GGUFWriter(path, arch)  # adds general.architecture
    factors = rope_factors(spec)
    if factors is not None:
        # written by the converter's generate_extra_tensors, i.e. before the other metadata
        w.add_key_value(f"{arch}.rope.scaling.attn_factor", spec.attn_factor, VT.FLOAT32)
    w.add_key_value("general.type", "model", VT.STRING)
    w.add_key_value("general.name", spec.name, VT.STRING)
    # set_gguf_parameters, in its order
    w.add_key_value(f"{arch}.context_length", spec.max_position_embeddings, VT.UINT32)
    w.add_key_value(f"{arch}.rope.scaling.original_context_length",
                    spec.original_max_position_embeddings, VT.UINT32)
    w.add_key_value(f"{arch}.embedding_length", spec.hidden, VT.UINT32)
    w.add_key_value(f"{arch}.feed_forward_length", spec.ffn, VT.UINT32)
    w.add_key_value(f"{arch}.block_count", spec.n_layer, VT.UINT32)
    w.add_key_value(f"{arch}.attention.head_count", spec.n_head, VT.UINT32)
    w.add_key_value(f"{arch}.attention.head_count_kv", spec.n_kv_head, VT.UINT32)
    w.add_key_value(f"{arch}.attention.layer_norm_rms_epsilon", spec.rms_norm_eps, VT.FLOAT32)
    w.add_key_value(f"{arch}.rope.dimension_count", spec.rope_dim, VT.UINT32)
    w.add_key_value(f"{arch}.rope.freq_base", spec.rope_theta, VT.FLOAT32)
    w.add_key_value("general.file_type", int(ftype), VT.UINT32)
    w.add_key_value(f"{arch}.attention.sliding_window", spec.sliding_window or 0, VT.UINT32)
    for key, val, vt, sub in tokenizer_keys(vocab_path):
        w.add_key_value(key, val, vt, sub)
    w.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, VT.UINT32)

    if factors is not None:
        w.add_tensor("rope_factors_long.weight", np.array(factors[1], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(factors[0], dtype=np.float32))
    for hf_name, data in weights.items():
        name = gguf_tensor_name(hf_name)
        if data.ndim == 1:
            w.add_tensor(name, data.astype(np.float32))
            continue
        q = to_type(data, qtype)
        w.add_tensor(name, q, raw_dtype=qtype if q.dtype == np.uint8 else None)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_llama_gguf(spec: ModelSpec, qtype: QT, ftype: FT, path: str, vocab_path: str) -> None:
    """The llama layout, as convert_hf_to_gguf.py's LlamaModel writes a Llama checkpoint:
    `llama.*` keys in set_gguf_parameters' order, Q and K rows permuted, separate q/k/v and
    gate/up tensors, no rope factor tensors."""
    arch = "llama"
    w = gguf.GGUFWriter(path, arch)
    w.add_key_value("general.type", "model", VT.STRING)
    w.add_key_value("general.name", spec.name, VT.STRING)
    w.add_key_value(f"{arch}.block_count", spec.n_layer, VT.UINT32)
    w.add_key_value(f"{arch}.context_length", spec.max_position_embeddings, VT.UINT32)
    w.add_key_value(f"{arch}.embedding_length", spec.hidden, VT.UINT32)
    w.add_key_value(f"{arch}.feed_forward_length", spec.ffn, VT.UINT32)
    w.add_key_value(f"{arch}.attention.head_count", spec.n_head, VT.UINT32)
    w.add_key_value(f"{arch}.attention.head_count_kv", spec.n_kv_head, VT.UINT32)
    w.add_key_value(f"{arch}.rope.freq_base", spec.rope_theta, VT.FLOAT32)
    w.add_key_value(f"{arch}.attention.layer_norm_rms_epsilon", spec.rms_norm_eps, VT.FLOAT32)
    w.add_key_value("general.file_type", int(ftype), VT.UINT32)
    w.add_key_value(f"{arch}.vocab_size", spec.n_vocab, VT.UINT32)
    w.add_key_value(f"{arch}.rope.dimension_count", spec.head_dim, VT.UINT32)
    if spec.rope_linear_factor is not None:
        w.add_key_value(f"{arch}.rope.scaling.type", "linear", VT.STRING)
        w.add_key_value(f"{arch}.rope.scaling.factor", spec.rope_linear_factor, VT.FLOAT32)
    for key, val, vt, sub in tokenizer_keys(vocab_path):
        w.add_key_value(key, val, vt, sub)
    w.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, VT.UINT32)
    for hf_name, data in llama_weights(spec).items():
        name = gguf_tensor_name(hf_name)
        if hf_name.endswith("q_proj.weight"):
            data = llama_permute(data, spec.n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = llama_permute(data, spec.n_kv_head)
        if data.ndim == 1:
            w.add_tensor(name, data.astype(np.float32))
            continue
        q = to_type(np.ascontiguousarray(data), qtype)
        w.add_tensor(name, q, raw_dtype=qtype if q.dtype == np.uint8 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--types", default=",".join(TYPES), help=f"comma-separated, of: {', '.join(TYPES)}")
    ap.add_argument("--vocab", default=DEFAULT_VOCAB, help="GGUF whose tokenizer.* keys are copied")
    args = ap.parse_args(argv)

    models = [m for m in args.models.split(",") if m]
    types = [t for t in args.types.split(",") if t]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    for t in types:
        if t not in TYPES:
            ap.error(f"unknown type {t!r}; known: {', '.join(TYPES)}")
    if not os.path.isfile(args.vocab):
        ap.error(f"vocab GGUF not found: {args.vocab}")

    os.makedirs(args.outdir, exist_ok=True)
    for m in models:
        spec = MODELS[m]
        weights = hf_weights(spec)
        for t in types:
            path = os.path.join(args.outdir, f"{m}-{t}.gguf")
            write_gguf(spec, t, path, args.vocab, weights)
            print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
