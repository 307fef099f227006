#!/usr/bin/env bash
# `cargo clippy -D warnings` of the whole workspace (library, binary, tests, benches,
# examples) for Windows and macOS: x86_64-pc-windows-gnu and aarch64-apple-darwin. A
# check, not a build: nothing is linked or run (no Windows or Mac here). (Not
# x86_64-apple-darwin: no code depends on x86 and macOS together; the x86 kernels are
# checked on Linux, the macOS code on aarch64, which saves CI a minute.) Linux-only code (/proc reads, madvise, cgroup limits) sits behind
# `cfg(target_os = "linux")` with a fallback, and this keeps it there.
#
# Installs what it lacks: the two rustup targets and, for the Windows check, Debian's
# gcc-mingw-w64-x86-64 (rustls' `ring` compiles C in its build script). macOS needs no C
# compiler: ureq uses the system's TLS there (Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
targets="x86_64-pc-windows-gnu aarch64-apple-darwin"
installed=$(rustup target list --installed)
for t in $targets; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  echo "tools/check-other-os.sh: installing gcc-mingw-w64-x86-64" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64 >/dev/null \
    || { $sudo apt-get update -q >/dev/null \
      && $sudo apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64 >/dev/null; }
fi
export CARGO_TARGET_DIR="$PWD/target/cross"
for t in $targets; do
  echo "tools/check-other-os.sh: $t" >&2
  cargo clippy --quiet --target "$t" --workspace --all-targets -- -D warnings
done
echo "tools/check-other-os.sh: all clean"
