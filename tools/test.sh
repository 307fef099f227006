#!/usr/bin/env bash
# The whole test suite, as the README and CI run it.
# The Python references (gguf-py, numpy) go in a venv under target/, reused when present;
# PHIQ_REQUIRE_REFERENCES=1 makes a missing reference a failure, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# phiq-kernels' layers: each module imports only the layers below it, no import cycle
python3 tools/check_kernel_layers.py
venv=target/pyref
if ! "$venv/bin/python" -c "import gguf, numpy, openai" 2>/dev/null; then
  echo "tools/test.sh: creating $venv (gguf-py, numpy, openai)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-ci.txt
fi
export PHIQ_PYTHON="$PWD/$venv/bin/python"
export PHIQ_REQUIRE_REFERENCES=1
# The C interface's tests link a C program and ctypes against the shared library, which
# `cargo test` alone does not build (it links the tests against the rlib).
cargo build -p phiq-capi
cargo test --workspace "$@"
# tiny models for the forward-pass tests: deterministic, and the ones the references describe
"$PHIQ_PYTHON" tools/test_tiny_models.py
