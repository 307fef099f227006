#!/usr/bin/env bash
# The aarch64 build (NEON + dotprod kernels) tested under `qemu-aarch64 -cpu max` (an
# emulated CPU with dotprod and i8mm): the kernels' tests, which compare every level this
# CPU has (scalar, neon) with the scalar references, and the forward-pass and demo tests,
# which compare the whole model (on the best level, neon) with the transformers
# references committed in tests/fixtures. Correctness only: qemu says nothing about speed.
#
# Installs what it lacks: rustup's aarch64-unknown-linux-gnu target and Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (apt-get, as root).
# Usage: bash tools/test-aarch64.sh [--kernels-only]
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
  || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  echo "tools/test-aarch64.sh: installing gcc-aarch64-linux-gnu, qemu-user" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; }
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

runner="qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$runner"
# The tests that start the `phiq` binary start it through qemu too.
export PHIQ_TEST_RUNNER="$runner"
# The neon level must be among the tested ones (kernels/tests/dot.rs).
export PHIQ_REQUIRE_ALL_ISAS=1
# A build of its own (no thin LTO, parallel codegen: the release profile's slow parts) in a
# directory of its own, so the x86 build's cache stays valid.
export CARGO_TARGET_DIR="$PWD/target/cross"
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_DEBUG=false
if [ -z "${PHIQ_PYTHON:-}" ] && [ -x target/pyref/bin/python ]; then
  export PHIQ_PYTHON="$PWD/target/pyref/bin/python"
fi
# (Its clippy: tools/check-other-os.sh lints the NEON kernels for aarch64-apple-darwin.)
cargo test --release --target "$target" -p phiq-kernels
if [ "${1:-}" != "--kernels-only" ]; then
  # forward_reference without its four long comparisons (minutes each under qemu; the x86
  # run covers them): its other tests compare F32/F16/quantized logits, greedy output, the
  # llama layout, RoPE variants, sliding windows and the f16 cache with transformers.
  cargo test --release --target "$target" -p phiq --test demo --test forward \
    --test forward_reference -- \
    --skip reasoning_rope_base --skip k_quant_and_iq4 --skip quantized_kv_cache \
    --skip iq_imatrix
fi
echo "tools/test-aarch64.sh: all passed"
