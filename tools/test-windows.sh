#!/usr/bin/env bash
# The Windows build (x86_64-pc-windows-gnu, linked by Debian's mingw-w64) run under Wine:
# the README's demo generation, compared with the transformers reference continuation in
# tests/fixtures/reference/demo-greedy.json, and the kernels' tests (every x86 level this
# CPU has, against the scalar references). In CI (.ci/run), about 4 minutes on 2 cores.
#
# Installs what it lacks: rustup's target, Debian's gcc-mingw-w64-x86-64 and wine64.
# Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's standard library imports;
# tools/wine/bcryptprimitives.c is a stand-in placed beside the executables (not shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || [ ! -x /usr/lib/wine/wine64 ]; then
  echo "tools/test-windows.sh: installing gcc-mingw-w64-x86-64, wine64" >&2
  $sudo apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64 wine64 >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q \
      --no-install-recommends gcc-mingw-w64-x86-64 wine64 >/dev/null; }
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_DIR="$PWD/target/cross"
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
export WINEDEBUG=-all
export WINEPREFIX="$CARGO_TARGET_DIR/wineprefix"
out="$CARGO_TARGET_DIR/$target/release"

cargo build --release --target "$target" --bin phiq
cargo test --release --target "$target" -p phiq-kernels --no-run
shim="$CARGO_TARGET_DIR/bcryptprimitives.dll"
x86_64-w64-mingw32-gcc -O2 -shared -o "$shim" tools/wine/bcryptprimitives.c -ladvapi32
cp "$shim" "$out/"
cp "$shim" "$out/deps/"

prompt=$(python3 -c 'import json; print(json.load(open("tests/fixtures/reference/demo-greedy.json"))["greedy"][0]["prompt"])')
got=$(/usr/lib/wine/wine64 "$out/phiq.exe" run -p "$prompt" -n 48 --temp 0 2>/dev/null)
GOT="$got" python3 - <<'PY'
import json, os, sys
want = json.load(open("tests/fixtures/reference/demo-greedy.json"))["greedy"][0]["text"]
got = os.environ["GOT"].rstrip("\n")
if len(got) < 20 or want[: len(got)] != got:
    sys.exit(f"tools/test-windows.sh: phiq.exe under Wine wrote {got!r}, want a prefix of {want!r}")
print(f"tools/test-windows.sh: the demo generation equals the reference ({len(got)} characters)")
PY
PHIQ_REQUIRE_ALL_ISAS=1 cargo test --release --target "$target" -p phiq-kernels
echo "tools/test-windows.sh: all passed"
