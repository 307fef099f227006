#!/usr/bin/env python3
"""gguf-py as an independent reference for phiq's GGUF reader and writer.

Commands:
  write-samples DIR     write GGUF files with gguf-py: every metadata value type, nested
                        arrays, several tensor types, a non-default alignment
  dump FILE             print gguf-py's reading of FILE as JSON (metadata in full, value
                        types, tensors with ggml-order shape, absolute offset, byte size
                        and, for small tensors, the data as hex)
  check-inspect PHIQ FILE...
                        run `PHIQ inspect --json --kv FILE` and compare every key, value,
                        value type, tensor name, shape, type, offset with gguf-py's reading;
                        exit 1 on any difference

Needs: pip install gguf numpy (gguf 0.19 was used).
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGUFValueType as VT, GGMLQuantizationType as QT


def write_samples(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(1234)

    # 1. Every value type, nested arrays, and several tensor types.
    path = os.path.join(outdir, "all-types.gguf")
    w = GGUFWriter(path, "phi3")
    w.add_key_value("test.u8", 200, VT.UINT8)
    w.add_key_value("test.i8", -100, VT.INT8)
    w.add_key_value("test.u16", 65000, VT.UINT16)
    w.add_key_value("test.i16", -32000, VT.INT16)
    w.add_key_value("test.u32", 4000000000, VT.UINT32)
    w.add_key_value("test.i32", -2000000000, VT.INT32)
    w.add_key_value("test.f32", 1e-5, VT.FLOAT32)
    w.add_key_value("test.bool_t", True, VT.BOOL)
    w.add_key_value("test.bool_f", False, VT.BOOL)
    w.add_key_value("test.string", "héllo wörld ✓ <|im_end|>", VT.STRING)
    w.add_key_value("test.empty_string", "", VT.STRING)
    w.add_key_value("test.u64", 2**63 + 12345, VT.UINT64)
    w.add_key_value("test.i64", -(2**62), VT.INT64)
    w.add_key_value("test.f64", math.pi, VT.FLOAT64)
    w.add_key_value("test.arr_u8", [0, 1, 255], VT.ARRAY, VT.UINT8)
    w.add_key_value("test.arr_i8", [-128, 0, 127], VT.ARRAY, VT.INT8)
    w.add_key_value("test.arr_u16", [1, 65535], VT.ARRAY, VT.UINT16)
    w.add_key_value("test.arr_i16", [-32768, 32767], VT.ARRAY, VT.INT16)
    w.add_key_value("test.arr_u32", [7, 4294967295], VT.ARRAY, VT.UINT32)
    w.add_key_value("test.arr_i32", list(range(-5, 20)), VT.ARRAY, VT.INT32)
    w.add_key_value("test.arr_f32", [0.5, -1.25, 3.4e38, 1e-30], VT.ARRAY, VT.FLOAT32)
    w.add_key_value("test.arr_bool", [True, False, True], VT.ARRAY, VT.BOOL)
    w.add_key_value("test.arr_str", ["a", "", "Ġhello", "日本語", "x" * 300], VT.ARRAY, VT.STRING)
    w.add_key_value("test.arr_u64", [0, 2**64 - 1], VT.ARRAY, VT.UINT64)
    w.add_key_value("test.arr_i64", [-(2**63), 2**63 - 1], VT.ARRAY, VT.INT64)
    w.add_key_value("test.arr_f64", [1.0 / 3.0, -2.5e300], VT.ARRAY, VT.FLOAT64)
    w.add_key_value("test.arr_nested", [[1, 2, 3], [4], [5, 6]], VT.ARRAY, VT.ARRAY)
    w.add_key_value("test.arr_long", list(range(1000)), VT.ARRAY, VT.INT32)
    w.add_tensor("f32.weight", rng.standard_normal((3, 64)).astype(np.float32))
    w.add_tensor("f16.weight", rng.standard_normal((2, 32)).astype(np.float16))
    w.add_tensor("vec.bias", rng.standard_normal(7).astype(np.float32))
    w.add_tensor("cube.weight", rng.standard_normal((2, 3, 32)).astype(np.float32))
    w.add_tensor("four.weight", rng.standard_normal((2, 1, 3, 32)).astype(np.float32))
    for name, qt in [("q8_0.weight", QT.Q8_0), ("q4_0.weight", QT.Q4_0), ("q4_k.weight", QT.Q4_K),
                     ("q6_k.weight", QT.Q6_K), ("iq4_xs.weight", QT.IQ4_XS), ("bf16.weight", QT.BF16)]:
        # Raw block bytes of the right size: this file tests the container, not the maths.
        block, size = gguf.GGML_QUANT_SIZES[qt]
        rows, cols = 2, 2 * 256
        raw = rng.integers(0, 256, size=(rows, cols // block * size), dtype=np.uint8)
        w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # 2. A non-default alignment.
    path = os.path.join(outdir, "align64.gguf")
    w = GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_key_value("general.name", "aligned", VT.STRING)
    w.add_tensor("a", rng.standard_normal(5).astype(np.float32))
    w.add_tensor("b", rng.standard_normal((3, 9)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # 3. Metadata only (like the vocab files).
    path = os.path.join(outdir, "no-tensors.gguf")
    w = GGUFWriter(path, "phi3")
    w.add_key_value("general.name", "empty", VT.STRING)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rebuild(parts, i, gtype):
    """Value of a field from gguf-py's raw parts, keeping nested arrays nested
    (gguf-py's `contents()` flattens them)."""
    if gtype == VT.ARRAY:
        itype = VT(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        vals = []
        for _ in range(n):
            v, i = rebuild(parts, i, itype)
            vals.append(v)
        return vals, i
    if gtype == VT.STRING:
        return bytes(parts[i + 1]).decode("utf-8"), i + 2
    v = parts[i].tolist()[0]
    return v, i + 1


def type_name(field):
    t = field.types[0]
    if t == VT.ARRAY:
        return "ARRAY[%s]" % field.types[1].name if len(field.types) > 1 else "ARRAY"
    return t.name


def jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def read(path):
    r = GGUFReader(path)
    meta, types = {}, {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        meta[name] = jsonable(rebuild(field.parts, 3, field.types[0])[0])
        types[name] = type_name(field)
    tensors = []
    for t in r.tensors:
        d = {
            "name": t.name,
            "type": QT(t.tensor_type).name,
            "shape": [int(x) for x in t.shape],
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
        }
        if t.n_bytes <= 4096:
            d["data_hex"] = np.asarray(t.data).tobytes().hex()
        tensors.append(d)
    version = int(r.fields["GGUF.version"].parts[-1][0])
    return {"version": version, "metadata": meta, "metadata_types": types,
            "tensors": tensors, "alignment": int(r.alignment)}


def same_value(ours, ref, vtype):
    if isinstance(ref, list):
        if not isinstance(ours, list) or len(ours) != len(ref):
            return False
        sub = vtype[6:-1] if vtype.startswith("ARRAY[") else ""
        return all(same_value(a, b, sub) for a, b in zip(ours, ref))
    if ref is None or ours is None:
        return ref is None and ours is None
    if vtype == "FLOAT32":
        return np.float32(ours) == np.float32(ref)
    if isinstance(ref, bool) or isinstance(ours, bool):
        return type(ref) is type(ours) and ref == ours
    return ours == ref


def check_inspect(phiq, files):
    bad = 0
    for path in files:
        out = subprocess.run([phiq, "inspect", "--json", "--kv", path],
                             capture_output=True, check=False)
        if out.returncode != 0:
            print(f"FAIL {path}: phiq exited {out.returncode}: {out.stderr.decode()}")
            bad += 1
            continue
        ours = json.loads(out.stdout)
        ref = read(path)
        errs = []
        if ours["version"] != ref["version"]:
            errs.append(f"version {ours['version']} != {ref['version']}")
        if list(ours["metadata"]) != list(ref["metadata"]):
            errs.append(f"keys differ: {list(ours['metadata'])} vs {list(ref['metadata'])}")
        for k, v in ref["metadata"].items():
            if k not in ours["metadata"]:
                continue
            if ours["metadata_types"].get(k) != ref["metadata_types"][k]:
                errs.append(f"{k}: type {ours['metadata_types'].get(k)} != {ref['metadata_types'][k]}")
            if not same_value(ours["metadata"][k], v, ref["metadata_types"][k]):
                errs.append(f"{k}: value differs")
        if ours.get("alignment") != ref["alignment"]:
            errs.append(f"alignment {ours.get('alignment')} != {ref['alignment']}")
        if len(ours["tensors"]) != len(ref["tensors"]):
            errs.append(f"{len(ours['tensors'])} tensors != {len(ref['tensors'])}")
        for a, b in zip(ours["tensors"], ref["tensors"]):
            for f in ("name", "type", "shape", "offset", "n_bytes"):
                if a[f] != b[f]:
                    errs.append(f"tensor {b['name']}: {f} {a[f]} != {b[f]}")
        if errs:
            bad += 1
            print(f"FAIL {path}:")
            for e in errs[:20]:
                print("   ", e)
        else:
            print(f"ok   {path}: {len(ref['metadata'])} keys, {len(ref['tensors'])} tensors")
    return 1 if bad else 0


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    cmd = sys.argv[1]
    if cmd == "write-samples":
        write_samples(sys.argv[2])
    elif cmd == "dump":
        json.dump(read(sys.argv[2]), sys.stdout, ensure_ascii=False)
        print()
    elif cmd == "check-inspect":
        return check_inspect(sys.argv[2], sys.argv[3:])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
