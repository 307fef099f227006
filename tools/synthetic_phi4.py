#!/usr/bin/env python3
"""A synthetic full-size Phi-4 GGUF: Phi-4's exact shapes and metadata, random weights.

    python tools/synthetic_phi4.py OUT.gguf [--type Q4_0|Q8_0|Q4_K_M|IQ4_XS|IQ3_M|IQ3_XXS|IQ2_M]
                                            [--layers 40] [--layout phi3|llama]

For full-size memory and speed work (it is ~8 GB as Q4_0: never commit it). Shapes:
40 layers, hidden 5120, FFN 17920, 40 query / 10 KV heads (head_dim 128), vocab 100352,
rope base 250000, context 16384 — as llama.cpp converts microsoft/phi-4 (architecture
`phi3`, fused attn_qkv [5120 → 7680] and ffn_up [5120 → 35840], untied output), with
Phi-4's real tokenizer keys from ../shared/fixtures/vocab/ggml-vocab-phi-4.gguf.

The weights are random bytes whose block scales are set to small normal f16 values, so
activations stay finite through all 40 layers (the text is gibberish; speed and memory do
not depend on the values). `Q4_K_M` mixes types as llama-quantize's Q4_K_M does for phi3
(attn_qkv Q5_K; ffn_down Q6_K in the "more bits" layers, else Q4_K; output Q6_K; the rest
Q4_K); `IQ4_XS` as llama-quantize's IQ4_XS without an imatrix (attn_qkv Q5_K since
Phi-4 has 4 query heads per KV head; ffn_down Q5_K in the first eighth of the layers; output
Q6_K; the rest IQ4_XS). The IQ presets (IQ3_M, IQ3_S, IQ3_XS, IQ3_XXS, IQ2_M, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S)
mix types as llama-quantize does (src/llama-quant.cpp, llama_tensor_get_type_impl) with an
importance matrix, as the IQ files people download are made, for Phi-4's 4 query heads per
KV head (`iq_mix`); e.g.
  IQ3_M   (base IQ3_S)  : token_embd IQ3_S, output Q6_K, attn_qkv/attn_v Q4_K, attn_output Q4_K,
                          ffn_down Q4_K in the first eighth of the layers, the rest IQ3_S;
  IQ3_XXS (base IQ3_XXS): token_embd IQ3_S, output Q5_K, attn_qkv/attn_v Q4_K, attn_output IQ3_S,
                          attn_q/attn_k IQ2_S (llama layout), the rest IQ3_XXS;
  IQ2_M   (base IQ2_S)  : token_embd IQ3_S, output Q5_K, attn_qkv/attn_v Q4_K, attn_output IQ3_S,
                          ffn_down IQ3_S in the first eighth, the rest IQ2_S.
Their block scales are calibrated so the weights have Q4_0's spread (gguf-py dequantizes a
sample of each type).
`--layout llama` writes the same model as convert_hf_to_gguf writes a Llama-ified Phi-4
(unsloth's): `llama.*` keys, separate attn_q/attn_k/attn_v and ffn_gate/ffn_up.
Tensors are written one at a time (gguf-py's streaming writer): memory stays small.

Needs numpy and gguf (tools/requirements-ci.txt).
"""
import argparse
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_models import tokenizer_keys, DEFAULT_VOCAB  # noqa: E402

N_EMBD, N_FF, N_HEAD, N_KV, HEAD_DIM, N_VOCAB, CTX = 5120, 17920, 40, 10, 128, 100352, 16384

# Byte offset and value (f16) of each block's scale fields, by type. Values are chosen so
# one matmul of rms-normed input gives outputs of std ~0.1 (see module doc).
SCALES = {
    QT.Q4_0: [(0, 3e-4)],
    QT.Q8_0: [(0, 2e-4)],
    QT.Q4_K: [(0, 2e-5), (2, 1e-5)],
    QT.Q5_K: [(0, 1e-5), (2, 5e-6)],
    QT.Q6_K: [(208, 1e-5)],
    QT.IQ4_XS: [(0, 3e-6)],
}
FILE_TYPE = {"Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "IQ4_XS": 30, "IQ2_XXS": 19, "IQ2_XS": 20,
             "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ3_S": 26, "IQ3_M": 27, "IQ2_S": 28,
             "IQ2_M": 29, "IQ1_M": 31}
# llama-quantize's base type of each IQ preset (llama_ftype_get_default_type).
IQ_PRESETS = {"IQ2_XXS": QT.IQ2_XXS, "IQ2_XS": QT.IQ2_XS, "IQ2_S": QT.IQ2_XS, "IQ2_M": QT.IQ2_S,
              "IQ3_XXS": QT.IQ3_XXS, "IQ3_XS": QT.IQ3_S, "IQ3_S": QT.IQ3_S, "IQ3_M": QT.IQ3_S,
              "IQ1_S": QT.IQ1_S, "IQ1_M": QT.IQ1_M}


def iq_mix(preset, name, layer, n_layer):
    """The type llama-quantize gives tensor `name` (of layer `layer`) under an IQ preset,
    for Phi-4 (4 query heads per KV head, no experts, untied output) with an importance
    matrix: llama_tensor_get_type_impl's branches for these tensors, in its order."""
    base = IQ_PRESETS[preset]
    low_bit = preset in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")
    s_or_m = preset in ("IQ2_S", "IQ2_M")
    first_eighth = layer is not None and layer < n_layer // 8
    if name == "output":
        return QT.Q5_K if low_bit or preset == "IQ3_XXS" else QT.Q6_K
    if name == "token_embd":
        if preset in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return QT.Q2_K
        if s_or_m or preset == "IQ3_XXS":
            return QT.IQ3_S
        return base
    if low_bit:
        if name in ("attn_v", "attn_qkv"):
            return QT.Q4_K  # n_gqa >= 4
        if name == "ffn_down":
            return (QT.IQ3_S if s_or_m else QT.Q2_K) if first_eighth else base
        if name == "attn_output":
            if preset in ("IQ1_S", "IQ1_M"):
                return QT.IQ2_XXS
            return QT.IQ3_S if s_or_m else base
        return base
    if name in ("attn_v", "attn_qkv"):
        # IQ3_XXS, IQ3_XS, IQ3_S with n_gqa >= 4, and IQ3_M: Q4_K
        return QT.Q4_K
    if name in ("attn_k", "attn_q"):
        return {"IQ3_XS": QT.IQ3_XXS, "IQ3_XXS": QT.IQ2_S}.get(preset, base)
    if name == "ffn_down":
        return QT.Q4_K if preset == "IQ3_M" and first_eighth else base
    if name == "attn_output":
        return {"IQ3_XXS": QT.IQ3_S, "IQ3_M": QT.Q4_K}.get(preset, base)
    if name in ("ffn_up", "ffn_gate") and preset == "IQ3_XS":
        middle = layer is not None and n_layer // 8 <= layer < 7 * n_layer // 8
        return QT.IQ3_XXS if middle else base
    return base

# The IQ types' d (f16 at byte 0) is calibrated at start-up so their weights have Q4_0's
# spread (see iq_scale): their grids and sub-block scales differ too much for one constant.
# Where each calibrated type keeps its f16 scale d: byte 0 for the IQ types, 80 for Q2_K
# (its dmin, at 82, is set to 0). IQ1_M has no d field: its f16 scale is spread over the top
# nibbles of its four u16 `scales` words (bytes 48..56), see set_iq1m_scale.
CALIBRATED = {QT.IQ3_S: 0, QT.IQ3_XXS: 0, QT.IQ2_S: 0, QT.IQ2_XS: 0, QT.IQ2_XXS: 0,
              QT.IQ1_S: 0, QT.IQ1_M: None, QT.Q2_K: 80}


def set_iq1m_scale(b, d):
    """Writes the f16 d into IQ1_M blocks b [n, 56]: its 4 nibbles become the top nibbles
    of the u16 scale words at bytes 48, 50, 52, 54 (ggml's iq1m_scale_t)."""
    bits = np.asarray(d, dtype=np.float16).view(np.uint16).astype(np.uint16)
    sc = b[:, 48:56].copy().view(np.uint16)
    for k in range(4):
        sc[:, k] = (sc[:, k] & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12)
    b[:, 48:56] = sc.view(np.uint8)


def set_scale(b, qt, d):
    """Sets the scale of every block in b [n, block bytes] to d (an array or a number)."""
    d16 = np.broadcast_to(np.asarray(d, dtype=np.float16), (b.shape[0],)).copy()
    off = CALIBRATED.get(qt, 0)
    if qt == QT.IQ1_M:
        set_iq1m_scale(b, d16)
        return
    b[:, off:off + 2] = d16.view(np.uint8).reshape(-1, 2)
    if qt == QT.Q2_K:
        b[:, 82:84] = 0


def weight_std(qt, d, rng, n_blocks=256):
    """The standard deviation of random blocks of type qt with scale d, dequantized by
    gguf-py."""
    block, size = gguf.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    set_scale(b, qt, d)
    return float(gguf.quants.dequantize(b.reshape(-1), qt).std())


def calibrate_iq_scales(rng):
    target = weight_std(QT.Q4_0, SCALES[QT.Q4_0][0][1], rng)
    for qt in CALIBRATED:
        SCALES[qt] = [(CALIBRATED[qt], target / weight_std(qt, 1.0, rng))]


def more_bits(i, n):
    """llama.cpp's use_more_bits(i_layer, n_layers)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def random_blocks(rng, qt, n_rows, n_cols, row_chunk=512):
    """Yields the tensor's bytes in row chunks (so a 1.9 GB tensor never sits in RAM)."""
    block, size = gguf.GGML_QUANT_SIZES[qt]
    per_row = n_cols // block
    for r0 in range(0, n_rows, row_chunk):
        rows = min(row_chunk, n_rows - r0)
        b = rng.integers(0, 256, size=(rows * per_row, size), dtype=np.uint8)
        if qt in CALIBRATED:
            set_scale(b, qt, rng.uniform(0.5, 1.5, size=rows * per_row) * SCALES[qt][0][1])
        else:
            for off, val in SCALES[qt]:
                jitter = rng.uniform(0.5, 1.5, size=rows * per_row).astype(np.float16) * np.float16(val)
                b[:, off:off + 2] = jitter.view(np.uint8).reshape(-1, 2)
        yield b.reshape(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--type", default="Q4_0", choices=sorted(FILE_TYPE))
    ap.add_argument("--layers", type=int, default=40, help="fewer layers for quick trials")
    ap.add_argument("--layout", default="phi3", choices=["phi3", "llama"],
                    help="phi3 (microsoft/phi-4 converted) or llama (a Llama-ified Phi-4 converted)")
    args = ap.parse_args()
    n_layer = args.layers
    rng = np.random.default_rng(1234)
    if args.type in IQ_PRESETS:
        calibrate_iq_scales(np.random.default_rng(99))

    def qtype(name, layer=None):
        first_eighth = layer is not None and layer < n_layer // 8
        if args.type in IQ_PRESETS:
            return iq_mix(args.type, name, layer, n_layer)
        if args.type == "IQ4_XS":
            if name == "attn_qkv" or (name == "ffn_down" and layer < n_layer // 8):
                return QT.Q5_K
            return QT.Q6_K if name == "output" else QT.IQ4_XS
        if args.type != "Q4_K_M":
            return QT[args.type]
        if name == "attn_qkv":
            return QT.Q5_K
        if name == "ffn_down" and more_bits(layer, n_layer):
            return QT.Q6_K
        if name == "output":
            return QT.Q6_K
        return QT.Q4_K

    # (name, ggml dims [n_in, n_out] or [n], type or None for F32)
    tensors = [("token_embd.weight", (N_EMBD, N_VOCAB), qtype("token_embd"))]
    llama = args.layout == "llama"
    for i in range(n_layer):
        tensors += [(f"blk.{i}.attn_norm.weight", (N_EMBD,), None)]
        if llama:
            tensors += [
                (f"blk.{i}.attn_q.weight", (N_EMBD, N_HEAD * HEAD_DIM), qtype("attn_q", i)),
                (f"blk.{i}.attn_k.weight", (N_EMBD, N_KV * HEAD_DIM), qtype("attn_k", i)),
                (f"blk.{i}.attn_v.weight", (N_EMBD, N_KV * HEAD_DIM), qtype("attn_v", i)),
            ]
        else:
            tensors += [(f"blk.{i}.attn_qkv.weight", (N_EMBD, (N_HEAD + 2 * N_KV) * HEAD_DIM),
                         qtype("attn_qkv", i))]
        tensors += [
            (f"blk.{i}.attn_output.weight", (N_HEAD * HEAD_DIM, N_EMBD), qtype("attn_output", i)),
            (f"blk.{i}.ffn_norm.weight", (N_EMBD,), None),
        ]
        if llama:
            tensors += [
                (f"blk.{i}.ffn_gate.weight", (N_EMBD, N_FF), qtype("ffn_gate", i)),
                (f"blk.{i}.ffn_up.weight", (N_EMBD, N_FF), qtype("ffn_up", i)),
            ]
        else:
            tensors += [(f"blk.{i}.ffn_up.weight", (N_EMBD, 2 * N_FF), qtype("ffn_up", i))]
        tensors += [(f"blk.{i}.ffn_down.weight", (N_FF, N_EMBD), qtype("ffn_down", i))]
    tensors += [("output_norm.weight", (N_EMBD,), None), ("output.weight", (N_EMBD, N_VOCAB), qtype("output"))]

    arch = args.layout
    w = gguf.GGUFWriter(args.out, arch)
    w.add_key_value("general.type", "model", VT.STRING)
    w.add_key_value("general.name", f"Phi 4 (synthetic, random weights, {args.type})" if not llama else f"Phi 4 (synthetic, random weights, {args.type}, Llama layout)", VT.STRING)
    keys = [("context_length", CTX), ("embedding_length", N_EMBD), ("feed_forward_length", N_FF),
            ("block_count", n_layer), ("attention.head_count", N_HEAD), ("attention.head_count_kv", N_KV)]
    if not llama:
        keys.insert(1, ("rope.scaling.original_context_length", CTX))
    for key, val in keys:
        w.add_key_value(f"{arch}.{key}", val, VT.UINT32)
    w.add_key_value(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5, VT.FLOAT32)
    w.add_key_value(f"{arch}.rope.dimension_count", HEAD_DIM, VT.UINT32)
    w.add_key_value(f"{arch}.rope.freq_base", 250000.0, VT.FLOAT32)
    w.add_key_value("general.file_type", FILE_TYPE[args.type], VT.UINT32)
    if not llama:
        w.add_key_value("phi3.attention.sliding_window", 0, VT.UINT32)
    for key, val, vt, sub in tokenizer_keys(DEFAULT_VOCAB):
        w.add_key_value(key, val, vt, sub)
    w.add_key_value("general.quantization_version", gguf.GGML_QUANT_VERSION, VT.UINT32)

    for name, dims, qt in tensors:
        if qt is None:
            w.add_tensor_info(name, (dims[0],), np.dtype(np.float32), dims[0] * 4)
        else:
            block, size = gguf.GGML_QUANT_SIZES[qt]
            n_in, n_out = dims
            # gguf-py takes the byte shape of the raw blocks: [n_out, bytes per row].
            row_bytes = n_in // block * size
            w.add_tensor_info(name, (n_out, row_bytes), np.dtype(np.uint8), n_out * row_bytes, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    _pad(w)  # the data section starts aligned
    total = 0
    for name, dims, qt in tensors:
        if qt is None:
            chunks = [np.ones(dims[0], dtype=np.float32)]
        else:
            chunks = random_blocks(rng, qt, dims[1], dims[0])
        for c in chunks:
            _write_raw(w, c)
            total += c.nbytes
        _pad(w)
        if sys.stderr.isatty():
            print(f"\r{name:32} {total / 2**30:6.2f} GiB", end="", file=sys.stderr, flush=True)
    w.close()
    print(file=sys.stderr)
    return 0


def _write_raw(w, arr):
    w.fout[0].write(arr.tobytes())


def _pad(w):
    f = w.fout[0]
    pos = f.tell()
    pad = (-pos) % w.data_alignment
    if pad:
        f.write(b"\0" * pad)


if __name__ == "__main__":
    sys.exit(main())
