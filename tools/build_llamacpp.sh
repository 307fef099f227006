#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix) from the llama.cpp source that the llama-cpp-python sdist
# vendors, natively tuned (GGML_NATIVE=ON), into target/llamacpp/bin. Idempotent.
#
#   bash tools/build_llamacpp.sh [VERSION=0.3.36]
#
# Needs: python3 with pip (for the sdist and for cmake/ninja from PyPI), a C/C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-0.3.36}
root=$PWD/target/llamacpp
mkdir -p "$root"
if [ ! -x "$root/venv/bin/cmake" ]; then
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install --quiet cmake ninja
fi
src="$root/src-$version"
if [ ! -d "$src" ]; then
  "$root/venv/bin/pip" download --quiet --no-binary llama-cpp-python --no-deps \
    "llama-cpp-python==$version" -d "$root/sdist"
  tmp=$(mktemp -d "$root/extract.XXXX")
  tar -xzf "$root/sdist/llama_cpp_python-$version.tar.gz" -C "$tmp"
  mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$src"
  rm -rf "$tmp"
fi
export PATH="$root/venv/bin:$PATH"
cmake -S "$src" -B "$root/build-$version" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$root/build-$version" -j "$(nproc)" \
  --target llama-bench llama-perplexity llama-quantize llama-imatrix
mkdir -p "$root/bin"
for t in llama-bench llama-perplexity llama-quantize llama-imatrix; do
  ln -sf "$root/build-$version/bin/$t" "$root/bin/$t"
done
echo "llama.cpp tools in $root/bin: $(ls "$root/bin" | tr '\n' ' ')"
