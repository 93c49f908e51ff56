#!/usr/bin/env bash
# pikku's one set-up step: install whatever the build and the tests need and is missing.
#
# Idempotent and quiet when everything is already there (it prints nothing then).
# Called by every Makefile target that builds or boots, so `make run` / `make test` work on a
# fresh machine. What it installs:
#   * the nightly pinned in rust-toolchain.toml, with rust-src, llvm-tools-preview, clippy and
#     the x86_64-unknown-none target (RUSTUP_AUTO_INSTALL=0 means nobody else will install it);
#   * Debian packages: qemu-system-x86 (the emulator), ovmf (UEFI firmware), musl-tools (user
#     programs linked against musl), cpio (packing the Linux reference initramfs);
#   * extra Debian packages named as arguments, for the targets that need them
#     (`scripts/setup.sh gdb` for `make trace`).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$top/rust-toolchain.toml")

fail() { echo "pikku setup: error: $*" >&2; exit 1; }

# --- Rust ---------------------------------------------------------------------------------
command -v rustup >/dev/null || fail "rustup not found; install it from https://rustup.rs and re-run"
need_rust=0
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    need_rust=1
else
    sysroot=$(rustup run "$toolchain" rustc --print sysroot)
    [ -d "$sysroot/lib/rustlib/src/rust/library" ] || need_rust=1
    [ -d "$sysroot/lib/rustlib/x86_64-unknown-none" ] || need_rust=1
    ls "$sysroot"/lib/rustlib/*/bin/llvm-objcopy >/dev/null 2>&1 || need_rust=1
    [ -x "$sysroot/bin/cargo-clippy" ] || need_rust=1
fi
if [ "$need_rust" = 1 ]; then
    echo "pikku setup: installing Rust $toolchain (rust-src, llvm-tools-preview, clippy, x86_64-unknown-none)"
    rustup toolchain install "$toolchain" --profile minimal \
        -c rust-src -c llvm-tools-preview -c clippy -t x86_64-unknown-none >/dev/null \
        || fail "could not install Rust $toolchain through rustup (no network to the Rust dist server?)"
fi

# --- Debian packages ------------------------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing+=(ovmf)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v cpio >/dev/null || missing+=(cpio)
for extra in "$@"; do
    command -v "$extra" >/dev/null || missing+=("$extra")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "pikku setup: installing ${missing[*]} with apt-get"
    command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get: install them by hand"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "apt-get could not install ${missing[*]}"
fi
exit 0
