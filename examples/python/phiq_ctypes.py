#!/usr/bin/env python3
"""phiq from Python through its C interface (ctypes, no build step).

    cargo build --release -p phiq-capi
    python3 examples/python/phiq_ctypes.py target/release/libphiq_capi.so models/phiq-demo.gguf \
        "Alice was beginning to get very tired" 24

Prints the token ids, then the generated text as it streams. The declarations below mirror
capi/include/phiq.h.
"""
import ctypes
import sys


class GenerateParams(ctypes.Structure):
    _fields_ = [
        ("max_tokens", ctypes.c_uint32),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_uint32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("seed", ctypes.c_uint64),
        ("n_ctx", ctypes.c_uint32),
        ("chat", ctypes.c_int),
    ]


PIECE_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p
)


class PhiqError(RuntimeError):
    pass


class Phiq:
    def __init__(self, lib_path):
        lib = ctypes.CDLL(lib_path)
        lib.phiq_last_error.restype = ctypes.c_char_p
        lib.phiq_version.restype = ctypes.c_char_p
        lib.phiq_model_load.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
        lib.phiq_model_load.restype = ctypes.c_int
        lib.phiq_model_free.argtypes = [ctypes.c_void_p]
        lib.phiq_model_free.restype = None
        lib.phiq_tokenize.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.phiq_tokenize.restype = ctypes.c_int
        lib.phiq_generate_default_params.restype = GenerateParams
        lib.phiq_generate.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(GenerateParams),
            PIECE_CALLBACK, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
        ]
        lib.phiq_generate.restype = ctypes.c_int
        self.lib = lib

    def check(self, status):
        if status != 0:
            raise PhiqError(f"phiq error {status}: {self.lib.phiq_last_error().decode()}")

    def load(self, path, threads=0):
        model = ctypes.c_void_p()
        self.check(self.lib.phiq_model_load(path.encode(), threads, ctypes.byref(model)))
        return Model(self, model)


class Model:
    def __init__(self, phiq, handle):
        self.phiq, self.handle = phiq, handle

    def close(self):
        if self.handle:
            self.phiq.lib.phiq_model_free(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def tokenize(self, text, add_special=True):
        lib, n = self.phiq.lib, ctypes.c_size_t()
        status = lib.phiq_tokenize(self.handle, text.encode(), int(add_special), None, 0, ctypes.byref(n))
        if status not in (0, 5):  # 5: PHIQ_ERR_BUFFER_TOO_SMALL, n is the size needed
            self.phiq.check(status)
        ids = (ctypes.c_uint32 * n.value)()
        self.phiq.check(lib.phiq_tokenize(self.handle, text.encode(), int(add_special), ids, n.value, ctypes.byref(n)))
        return list(ids[: n.value])

    def generate(self, prompt, on_piece, **settings):
        """Calls on_piece(text) per piece; a truthy return stops. Returns the stop reason."""
        params = self.phiq.lib.phiq_generate_default_params()
        for k, v in settings.items():
            setattr(params, k, v)

        @PIECE_CALLBACK
        def callback(text, length, token, user_data):
            return 1 if on_piece(ctypes.string_at(text, length).decode("utf-8")) else 0

        reason = ctypes.c_int()
        self.phiq.check(self.phiq.lib.phiq_generate(
            self.handle, prompt.encode(), ctypes.byref(params), callback, None, ctypes.byref(reason)))
        return reason.value


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    lib_path, model_path, prompt, max_tokens = sys.argv[1:]
    phiq = Phiq(lib_path)
    with phiq.load(model_path) as model:
        print("tokens:", " ".join(map(str, model.tokenize(prompt))))
        pieces = []
        reason = model.generate(prompt, pieces.append, max_tokens=int(max_tokens), temperature=0.0)
        print("text:", "".join(pieces))
        print("reason:", reason)
        try:
            phiq.load("/nonexistent/model.gguf")
        except PhiqError as e:
            print("error:", e)


if __name__ == "__main__":
    main()
