#!/usr/bin/env python3
"""gguf-py's quantization maths as the reference for phiq's block formats.

  dequantize TYPE IN OUT   IN: raw blocks of ggml type TYPE; OUT: float32 LE values
  quantize TYPE IN OUT     IN: float32 LE values (a multiple of the block size);
                           OUT: raw blocks, as gguf-py's reference quantizer makes them
                           (types gguf-py quantizes: F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0)

Needs: pip install gguf numpy (gguf 0.19 was used).
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    cmd, tname, src, dst = sys.argv[1:]
    qt = QT[tname]
    if cmd == "dequantize":
        raw = np.fromfile(src, dtype=np.uint8)
        if qt == QT.F32:
            out = raw.view(np.float32)
        elif qt == QT.F16:
            out = raw.view(np.float16).astype(np.float32)
        else:
            out = quants.dequantize(raw.reshape(1, -1), qt)
        np.asarray(out, dtype=np.float32).reshape(-1).tofile(dst)
    elif cmd == "quantize":
        x = np.fromfile(src, dtype=np.float32).reshape(1, -1)
        if qt == QT.F16:
            out = x.astype(np.float16).view(np.uint8)
        else:
            out = quants.quantize(x, qt)
        np.asarray(out).reshape(-1).tofile(dst)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
