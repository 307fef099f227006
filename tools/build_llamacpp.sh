#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix) from the llama.cpp source that the llama-cpp-python sdist
# vendors, tuned for this CPU, into target/llamacpp/bin. Idempotent (per CPU flag set).
#
# Not GGML_NATIVE=ON: some machines here list AMX in /proc/cpuinfo but fault on AMX
# instructions (SIGILL), and -march=native would use them. Instead GGML_NATIVE=OFF with
# each instruction set this CPU reports turned on explicitly (AVX2/FMA/F16C, AVX-512 with
# VBMI/VNNI/BF16, AVX-VNNI), never AMX.
#
#   bash tools/build_llamacpp.sh [VERSION=0.3.36]
#   ISA=avx2|avxvnni|avx512 bash tools/build_llamacpp.sh   # one level only (tools in
#                                                          # target/llamacpp/bin-$ISA)
#
# With ISA, the build turns on exactly that level's instruction sets, as phiq's
# PHIQ_ISA=$ISA runs its own (so the two compare at the same level on a CPU that has more):
# avx2 = AVX/AVX2/FMA/F16C/BMI2; avxvnni = that + AVX-VNNI; avx512 = that + AVX-512
# F/BW/VL with VBMI, VNNI and BF16 (those this CPU has).
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
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
level=${ISA:-}
case "$level" in
  "") off() { has "$1"; } ;;
  avx2) off() { echo OFF; } ;;
  avxvnni) off() { [ "$1" = avx_vnni ] && has avx_vnni || echo OFF; } ;;
  avx512) off() { [ "$1" = avx_vnni ] && echo OFF || has "$1"; } ;;
  *) echo "ISA=$level: avx2, avxvnni or avx512" >&2; exit 2 ;;
esac
isa=(-DGGML_NATIVE=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma)
     -DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX512=$(off avx512f)
     -DGGML_AVX512_VBMI=$(off avx512_vbmi) -DGGML_AVX512_VNNI=$(off avx512_vnni)
     -DGGML_AVX512_BF16=$(off avx512_bf16) -DGGML_AVX_VNNI=$(off avx_vnni)
     -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
suffix=${level:+-$level}
echo "build_llamacpp.sh: ${isa[*]}" >&2
cmake -S "$src" -B "$root/build-$version$suffix" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${isa[@]}" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$root/build-$version$suffix" -j "$(nproc)" \
  --target llama-bench llama-perplexity llama-quantize llama-imatrix
mkdir -p "$root/bin$suffix"
for t in llama-bench llama-perplexity llama-quantize llama-imatrix; do
  ln -sf "$root/build-$version$suffix/bin/$t" "$root/bin$suffix/$t"
done
echo "llama.cpp tools in $root/bin$suffix: $(ls "$root/bin$suffix" | tr '\n' ' ')"
