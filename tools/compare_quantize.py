#!/usr/bin/env python3
"""`phiq quantize` vs llama.cpp's quantizer on the tiny models, tensor by tensor, and
llama.cpp's accuracy on its own quantized files (the bars for K-quant files).

    python tools/compare_quantize.py [--phiq target/release/phiq] [--workdir DIR]
                                     [--out tests/fixtures/reference/llamacpp-quantize.json]

For tiny-phi4 and tiny-phi4-mini (tools/tiny_models.py, F32; the sha256 is checked against
the reference JSONs) and every preset of RUNS, this quantizes the F32 file twice:
- with llama.cpp: llama-cpp-python's `llama_model_quantize` with
  `llama_model_quantize_default_params()`, `ftype` set to the preset and `pure` as asked,
  no imatrix (what `llama-quantize [--pure] IN OUT TYPE` does);
- with `phiq quantize IN OUT PRESET [--pure]`;
then compares every tensor (by name): the type each chose and the data bytes. Where the
types differ, phiq's bytes are also looked up among all of llama.cpp's outputs for the same
model (every llama.cpp run of the same tensor to the same type gives the same bytes), which
tells a type-choice difference from a quantizer difference.

It also evaluates every llama.cpp output with llama.cpp (tools/llamacpp_logits.py's
functions: all logits, one thread) on the sequence llamacpp-kl.json uses for that model
(`chat` for tiny-phi4, `long` for tiny-phi4-mini) and compares with transformers' float32
logits (recomputed): mean/max KL, top-1 agreement, max |dlogit|, with the default f16 KV
cache and with an F32 KV cache (`kv_f32`). For tiny-phi4-mini also over the committed
subset of columns (`subset_columns`). When phiq's file is not identical, the same figures
for llama.cpp on phiq's file are given (`phiq_file_kl`), to show what its differences cost.

`type_rules` then checks only the type choice, for every preset without --pure, on variants
of tiny-phi4 (VARIANTS: 16 layers, GQA 2, rows of 160) that exercise the rules two layers
cannot.

The JSON holds, per file, the type llama.cpp chose and the sha256 of the data bytes of every
tensor, whether phiq's bytes were identical, the differences, and the figures above. A test
can quantize with phiq, check the per-tensor sha256 and hold phiq's logits on that file to
llama.cpp's figures.

Needs what tools/llamacpp_logits.py needs (torch, transformers, numpy, gguf, llama-cpp-python)
and a built phiq (`cargo build --release`). Single-threaded.
"""
import argparse
import contextlib
import ctypes
import dataclasses
import glob
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_models as tm  # noqa: E402
import ref_logits as rl  # noqa: E402
import llamacpp_logits as ll  # noqa: E402

import gguf  # noqa: E402
import llama_cpp  # noqa: E402

REPO_ROOT = tm.REPO_ROOT

# (name in the JSON, llama.cpp ftype, phiq preset name, pure). llama-quantize's "Q4_K",
# "Q5_K" and "Q3_K" are aliases of Q4_K_M, Q5_K_M and Q3_K_M; with --pure every quantized
# tensor gets the ftype's default type, so "Q4_K --pure" is ftype Q4_K_M with pure.
RUNS = [
    ("Q4_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q4_K_M", False),
    ("Q5_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, "Q5_K_M", False),
    ("Q6_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, "Q6_K", False),
    ("IQ4_XS", llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_XS, "IQ4_XS", False),
    ("Q2_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K, "Q2_K", False),
    ("Q3_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M, "Q3_K_M", False),
    ("Q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "Q4_0", False),
    ("Q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q8_0", False),
    ("Q4_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q4_K_M", True),
    ("Q5_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, "Q5_K_M", True),
    ("Q6_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, "Q6_K", True),
    ("IQ4_XS", llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_XS, "IQ4_XS", True),
    ("IQ4_NL", llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL, "IQ4_NL", True),
    ("Q2_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K, "Q2_K", True),
    ("Q3_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M, "Q3_K_M", True),
]

MODELS = ["tiny-phi4", "tiny-phi4-mini"]

# Type-choice check only (no bytes, no KL): variants of tiny-phi4 that exercise the rules two
# layers cannot (the first/last eighth, n_layer/16, "layer < 4", GQA below 4) and a width
# that is not a multiple of 256 (the fallback for rows that are not whole K-quant blocks).
VARIANTS = {
    "deep16-gqa4": dict(n_layer=16),                # Phi-4's GQA (40/10 heads)
    "deep16-gqa2": dict(n_layer=16, n_kv_head=4),   # GQA below 4 (Phi-4-mini: 24/8 = 3)
    "narrow160": dict(hidden=160),                  # rows of 160: not whole 256-blocks
}
RULE_PRESETS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
                "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]


def run_key(model: str, name: str, pure: bool) -> str:
    return f"{model}-{name}{'-pure' if pure else ''}"


# ---- reading tensors -------------------------------------------------------------------------

_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_tensors(path: str) -> dict[str, tuple[str, bytes]]:
    """{name: (ggml type name, data bytes)} of a GGUF v3 file, in file order.

    A direct parser of the header (skipping the metadata values): gguf.GGUFReader takes ~10 s
    per file here (a numpy view per vocabulary string); `check_reader` confirms that both
    agree on one file per run.
    """
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] != 3:
        raise ValueError(f"{path}: not a GGUF v3 file")
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
    pos = 24
    alignment = 32

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        s = buf[pos + 8: pos + 8 + n]
        pos += 8 + n
        return s

    def skip_value(vt):
        nonlocal pos
        if vt == 8:
            string()
        elif vt == 9:
            sub, n = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if sub == 8:
                for _ in range(n):
                    (m,) = struct.unpack_from("<Q", buf, pos)
                    pos += 8 + m
            elif sub == 9:
                raise ValueError("nested arrays")
            else:
                pos += n * _SCALAR_SIZE[sub]
        else:
            pos += _SCALAR_SIZE[vt]

    for _ in range(n_kv):
        key = string()
        (vt,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if key == b"general.alignment":
            (alignment,) = struct.unpack_from("<I", buf, pos)
        skip_value(vt)
    infos = []
    for _ in range(n_tensors):
        name = string().decode()
        (nd,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        dims = struct.unpack_from(f"<{nd}Q", buf, pos)
        pos += 8 * nd
        ty, off = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        infos.append((name, gguf.GGMLQuantizationType(ty), dims, off))
    data_start = (pos + alignment - 1) // alignment * alignment
    out = {}
    for name, ty, dims, off in infos:
        block, type_size = gguf.GGML_QUANT_SIZES[ty]
        n = int(np.prod(dims))
        nbytes = n // block * type_size
        start = data_start + off
        out[name] = (ty.name, buf[start:start + nbytes])
    return out


def check_reader(path: str, tensors: dict[str, tuple[str, bytes]]) -> None:
    r = gguf.GGUFReader(path)
    seen = {}
    for t in r.tensors:
        seen[t.name] = (t.tensor_type.name, bytes(r.data[t.data_offset:t.data_offset + t.n_bytes]))
    if seen != tensors:
        raise SystemExit(f"{path}: the header parser disagrees with gguf.GGUFReader")


def file_type(path: str) -> int:
    r = tm.read_metadata(path)
    return next(v for k, v, _, _ in r if k == "general.file_type")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---- quantizing ------------------------------------------------------------------------------

@contextlib.contextmanager
def fds_to(path: str):
    """Send this process's stdout and stderr (llama.cpp's log) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def llamacpp_quantize(src: str, dst: str, ftype: int, pure: bool, log: str) -> int:
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.pure = pure
    p.nthread = 1
    with fds_to(log):
        return llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))


def phiq_quantize(phiq: str, src: str, dst: str, preset: str, pure: bool) -> tuple[int, str]:
    cmd = [phiq, "quantize", src, dst, preset, "-t", "1"] + (["--pure"] if pure else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stderr[-2000:]


# ---- accuracy --------------------------------------------------------------------------------

def kl_figures(path: str, ids: list[int], ref: np.ndarray, subset: bool) -> dict:
    out = {}
    for setting in ("default", "kv_f32"):
        logits = ll.llamacpp_logits(path, ids, **ll.SETTINGS[setting])
        res = ll.compare(ref, logits)
        if subset:
            cols = np.arange(0, ref.shape[1], rl.SUBSET_STRIDE)
            s = ll.compare(ref[:, cols], logits[:, cols])
            res["subset_columns"] = {"mean_kl": s["mean_kl"], "top1_agreement": s["top1_agreement"]}
        if setting == "default":
            out.update(res)
        else:
            del res["n_positions"]
            out[setting] = res
    return out


def type_summary(tensors: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """The types of the 2-D tensors, per-layer tensors as one string ("blk.*.ffn_down.weight":
    "Q6_K Q4_K ..." in layer order)."""
    out: dict[str, list[str]] = {}
    for name, (ty, _) in tensors.items():
        if name.endswith("_norm.weight") or name.startswith("rope_factors"):
            continue  # 1-D, always F32
        if name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            out.setdefault(f"blk.*.{rest}", []).append((int(layer), ty))
        else:
            out[name] = ty
    return {k: v if isinstance(v, str) else " ".join(t for _, t in sorted(v)) for k, v in sorted(out.items())}


def rules_check(phiq: str, workdir: str, log: str) -> dict:
    doc = {}
    for variant, changes in VARIANTS.items():
        spec = dataclasses.replace(tm.MODELS["tiny-phi4"], name=variant, **changes)
        src = os.path.join(workdir, f"{variant}-F32.gguf")
        tm.write_gguf(spec, "F32", src)
        entry = {"spec": dict(changes, base="tiny-phi4"), "presets": {}}
        for preset in RULE_PRESETS:
            ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{preset}")
            lpath = os.path.join(workdir, f"{variant}-{preset}.llamacpp.gguf")
            ppath = os.path.join(workdir, f"{variant}-{preset}.phiq.gguf")
            res = {}
            rc = llamacpp_quantize(src, lpath, ftype, False, log)
            if rc != 0:
                res["llama_cpp_error"] = f"llama_model_quantize returned {rc}"
                lt = None
            else:
                lt = read_tensors(lpath)
                res["llama_cpp"] = type_summary(lt)
            rc, err = phiq_quantize(phiq, src, ppath, preset, False)
            if rc != 0:
                res["phiq_error"] = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
            elif lt is not None:
                pt = read_tensors(ppath)
                if set(pt) != set(lt):
                    res["phiq_tensor_names_differ"] = True
                ps = type_summary(pt)
                res["phiq_differs"] = {k: v for k, v in ps.items() if res["llama_cpp"].get(k) != v}
            entry["presets"][preset] = res
            print(f"rules {variant} {preset}: "
                  + ("".join(f"\n    {k}\n      llama.cpp {res['llama_cpp'].get(k)}\n      phiq      {v}"
                             for k, v in res["phiq_differs"].items()) if res.get("phiq_differs") else "same types"),
                  file=sys.stderr)
            for p in (lpath, ppath):
                if os.path.exists(p):
                    os.remove(p)
        os.remove(src)
        doc[variant] = entry
    return doc


def dumps(obj, depth: int = 0) -> str:
    """JSON with one space of indent per level, objects and lists of scalars on one line,
    floats to 6 significant digits (the figures are not more precise than that)."""
    def scalar(v):
        return not isinstance(v, (dict, list))

    def enc(v):
        if isinstance(v, float):
            return json.dumps(float(f"{v:.6g}"))
        return json.dumps(v, ensure_ascii=False)

    if isinstance(obj, dict):
        if all(scalar(v) for v in obj.values()) and len(obj) <= 6:
            return "{" + ", ".join(f"{json.dumps(k)}: {enc(v)}" for k, v in obj.items()) + "}"
        pad = " " * (depth + 1)
        items = [f"{pad}{json.dumps(k)}: {dumps(v, depth + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(obj, list):
        if all(scalar(v) for v in obj):
            return "[" + ", ".join(enc(v) for v in obj) + "]"
        pad = " " * (depth + 1)
        return "[\n" + ",\n".join(pad + dumps(v, depth + 1) for v in obj) + "\n" + " " * depth + "]"
    return enc(obj)


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", REPO_ROOT, *args],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


QUANTIZE_SOURCES = ["src/quantize.rs", "kernels/src/quant/k.rs", "kernels/src/quant/imatrix.rs", "kernels/src/dynamic.rs"]


def phiq_version(phiq: str) -> dict:
    """The checkout's HEAD and the last commit of phiq's quantizer sources (uncommitted
    changes there are flagged), and what the binary says of itself."""
    dirty = git("status", "--porcelain", "--", *QUANTIZE_SOURCES)
    out = subprocess.run([phiq, "--version"], capture_output=True, text=True).stdout.strip()
    return {"head": git("describe", "--always", "--dirty"),
            "quantize_sources_commit": git("log", "-1", "--format=%h", "--", *QUANTIZE_SOURCES)
            + (" (with uncommitted changes)" if dirty else ""),
            "version": out}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phiq", default=os.path.join(REPO_ROOT, "target", "release", "phiq"))
    ap.add_argument("--workdir", default="/tmp/phiq-compare-quantize",
                    help="F32 inputs (written if missing) and the quantized files")
    ap.add_argument("--out", default=os.path.join(rl.DEFAULT_OUT, "llamacpp-quantize.json"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-kl", action="store_true", help="compare bytes only (fast)")
    ap.add_argument("--keep", action="store_true", help="keep the quantized files")
    ap.add_argument("--no-rules", action="store_true", help="skip the type-choice check on VARIANTS")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if not os.access(args.phiq, os.X_OK):
        raise SystemExit(f"{args.phiq}: not found; cargo build --release")
    os.makedirs(args.workdir, exist_ok=True)
    log = os.path.join(args.workdir, "llama.cpp.log")

    versions = rl.versions()
    versions["llama_cpp_python"] = llama_cpp.__version__
    libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml.so.*.*"))
    versions["ggml"] = sorted(libs)[-1].split("libggml.so.")[-1] if libs else None
    versions["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    versions["phiq"] = phiq_version(args.phiq)
    doc = {
        "made_by": "python tools/compare_quantize.py (see README.md)",
        "versions": versions,
        "llama_cpp_quantize": "llama_cpp.llama_model_quantize(F32 file, out, params) with "
                              "llama_model_quantize_default_params(), ftype = llama_cpp_ftype, "
                              "pure as given, nthread 1, no imatrix (= llama-quantize [--pure] IN OUT TYPE)",
        "phiq_quantize": "phiq quantize IN OUT phiq_preset [--pure] -t 1",
        "tensors": "per tensor of llama.cpp's output: the ggml type it chose and the sha256 of its "
                   "data bytes (tensor order and metadata are not compared)",
        "phiq": "phiq's output: identical = every tensor has llama.cpp's type and bytes; differences "
                "lists the other tensors: both types, and (types equal) bytes_equal, or (types differ) "
                "phiq_bytes_match_llamacpp = whether any llama.cpp run of this table quantized this "
                "tensor to phiq's type with the same bytes (null: no llama.cpp run used that type)",
        "metric": "llama.cpp on its own output vs transformers float32 logits of the same weights "
                  "(as llamacpp-kl.json): KL(P_transformers || P_llama.cpp) per position, natural log, "
                  "softmax over all 100352 ids in float64, mean/max over positions; top1_agreement; "
                  "max_abs_logit_diff. Top level: llama.cpp defaults (f16 KV cache); kv_f32: "
                  "type_k = type_v = F32. subset_columns (tiny-phi4-mini): over the columns "
                  "range(0, 100352, 64) only, as committed in tiny-phi4-mini.long.logits.npy. "
                  "phiq_file_kl: the same figures for llama.cpp evaluating phiq's file (only when not identical)",
        "type_rules_note": "type choice only, on variants of tiny-phi4 (F32 from tools/tiny_models.py with "
                           "the spec changes given), every preset without --pure: llama.cpp's type per 2-D "
                           "tensor (per-layer tensors as one string, in layer order), and phiq's where "
                           "it differs (phiq_differs, same form)",
        "models": {},
        "files": {},
    }

    long_ids, _ = rl.long_ids()
    plan = {"tiny-phi4": ("chat", rl.CHAT_IDS), "tiny-phi4-mini": ("long", long_ids)}
    rows = []
    for model in args.models.split(","):
        spec = tm.MODELS[model]
        seq_name, ids = plan[model]
        src = os.path.join(args.workdir, f"{model}-F32.gguf")
        with open(os.path.join(rl.DEFAULT_OUT, f"{model}.json")) as f:
            want = json.load(f)["gguf_files"][f"{model}-F32.gguf"]["sha256"]
        if not os.path.exists(src) or rl.sha256(src) != want:
            tm.write_gguf(spec, "F32", src)
        if rl.sha256(src) != want:
            raise SystemExit(f"{src}: not the file {model}.json describes")
        doc["models"][model] = {"f32_sha256": want, "sequence": seq_name, "ids": list(ids)}
        ref = None
        if not args.no_kl:
            ref = rl.forward_logits(rl.build_model(spec), ids)

        results = {}
        # (tensor, type) -> set of sha256 over all llama.cpp runs of this model
        seen: dict[tuple[str, str], set[str]] = {}
        for name, ftype, preset, pure in RUNS:
            key = run_key(model, name, pure)
            lpath = os.path.join(args.workdir, f"{key}.llamacpp.gguf")
            ppath = os.path.join(args.workdir, f"{key}.phiq.gguf")
            entry = {"model": model, "preset": name, "pure": pure, "llama_cpp_ftype": int(ftype),
                     "phiq_preset": preset}
            t0 = time.time()
            rc = llamacpp_quantize(src, lpath, ftype, pure, log)
            if rc != 0:
                entry["llama_cpp_error"] = f"llama_model_quantize returned {rc} (see its log)"
                print(f"{key}: llama.cpp refused (rc {rc})", file=sys.stderr)
                results[key] = (entry, None, None)
                continue
            lt = read_tensors(lpath)
            if not results:
                check_reader(lpath, lt)
            entry["general_file_type"] = file_type(lpath)
            entry["tensors"] = {n: {"type": ty, "sha256": sha(b)} for n, (ty, b) in lt.items()}
            for n, (ty, b) in lt.items():
                seen.setdefault((n, ty), set()).add(sha(b))
            rc, err = phiq_quantize(args.phiq, src, ppath, preset, pure)
            pt = None
            if rc != 0:
                entry["phiq_error"] = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
            else:
                pt = read_tensors(ppath)
                entry["phiq_general_file_type"] = file_type(ppath)
                entry["phiq_tensor_order_equal"] = list(pt) == list(lt)
            results[key] = (entry, lt, pt)
            print(f"{key}: quantized in {time.time() - t0:.1f} s", file=sys.stderr)

        for key, (entry, lt, pt) in results.items():
            if lt is not None and pt is not None:
                diffs = []
                for n, (lty, lb) in lt.items():
                    if n not in pt:
                        diffs.append({"tensor": n, "llama_cpp_type": lty, "phiq_type": None})
                        continue
                    pty, pb = pt[n]
                    if pty == lty and pb == lb:
                        continue
                    d = {"tensor": n, "llama_cpp_type": lty, "phiq_type": pty}
                    if pty == lty:
                        d["bytes_equal"] = False
                        a = np.frombuffer(lb, np.uint8)
                        b = np.frombuffer(pb, np.uint8)
                        d["bytes_differing"] = int((a != b).sum())
                        d["bytes_total"] = len(lb)
                        block, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[lty]]
                        d["blocks_differing"] = int((a != b).reshape(-1, tsize).any(axis=1).sum())
                        d["blocks_total"] = len(lb) // tsize
                    else:
                        s = seen.get((n, pty))
                        d["phiq_bytes_match_llamacpp"] = None if s is None else sha(pb) in s
                    diffs.append(d)
                extra = [n for n in pt if n not in lt]
                entry["phiq"] = {"identical": not diffs and not extra, "differences": diffs}
                if extra:
                    entry["phiq"]["extra_tensors"] = extra
            if ref is not None and lt is not None:
                lpath = os.path.join(args.workdir, f"{key}.llamacpp.gguf")
                entry["kl"] = kl_figures(lpath, ids, ref, seq_name == "long")
                if pt is not None and not entry["phiq"]["identical"]:
                    ppath = os.path.join(args.workdir, f"{key}.phiq.gguf")
                    entry["phiq_file_kl"] = kl_figures(ppath, ids, ref, seq_name == "long")
            doc["files"][key] = entry
            rows.append(entry)
            if not args.keep:
                for suffix in (".llamacpp.gguf", ".phiq.gguf"):
                    p = os.path.join(args.workdir, key + suffix)
                    if os.path.exists(p):
                        os.remove(p)

    print_table(rows)
    if not args.no_rules:
        doc["type_rules"] = rules_check(args.phiq, args.workdir, log)
    with open(args.out, "w") as f:
        f.write(dumps(doc) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def print_table(rows: list[dict]) -> None:
    print("| model | preset | pure | tensors | same type | same bytes | phiq identical | "
          "llama.cpp mean KL | top-1 | mean KL, KV f32 | top-1, KV f32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    details = []
    for e in rows:
        if "tensors" not in e:
            print(f"| {e['model']} | {e['preset']} | {e['pure']} | llama.cpp: {e['llama_cpp_error']} |")
            continue
        n = len(e["tensors"])
        if "phiq" in e:
            diffs = e["phiq"]["differences"]
            same_type = n - sum(1 for d in diffs if d["phiq_type"] != d["llama_cpp_type"])
            same_bytes = n - len(diffs)
            ident = "yes" if e["phiq"]["identical"] else "**no**"
            for d in diffs:
                details.append((e, d))
        else:
            same_type = same_bytes = "–"
            ident = f"phiq: {e.get('phiq_error')}"
        kl = e.get("kl")
        figs = (f"{kl['mean_kl']:.4g} | {kl['top1_agreement']:.3f} | {kl['kv_f32']['mean_kl']:.4g} | "
                f"{kl['kv_f32']['top1_agreement']:.3f}") if kl else "– | – | – | –"
        print(f"| {e['model']} | {e['preset']} | {'yes' if e['pure'] else 'no'} | {n} | {same_type} | "
              f"{same_bytes} | {ident} | {figs} |")
    if details:
        print()
        print("| model | preset | pure | tensor | llama.cpp type | phiq type | what |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for e, d in details:
            if d["phiq_type"] == d["llama_cpp_type"]:
                what = (f"quantizer: {d['bytes_differing']}/{d['bytes_total']} bytes, "
                        f"{d['blocks_differing']}/{d['blocks_total']} blocks differ")
            else:
                m = d.get("phiq_bytes_match_llamacpp")
                what = "type rule; phiq's bytes " + (
                    "= llama.cpp's for that type" if m else
                    "≠ llama.cpp's for that type" if m is False else "(no llama.cpp run of that type)")
            print(f"| {e['model']} | {e['preset']} | {'yes' if e['pure'] else 'no'} | {d['tensor']} | "
                  f"{d['llama_cpp_type']} | {d['phiq_type']} | {what} |")


if __name__ == "__main__":
    sys.exit(main())
