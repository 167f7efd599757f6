#!/bin/sh
# Installs the cross toolchain of cross/build.sh on Debian/Ubuntu (as root; idempotent):
#   - the arm64 architecture for apt, Debian's Rust (rustc-web, cargo-web) with the aarch64
#     standard library (libstd-rust-web-dev:arm64, which brings libc6:arm64 so qemu-user finds
#     the aarch64 loader), qemu-user for the aarch64 smoke runs, qemu-system-arm and cpio for the
#     aarch64 VM of the package test (scripts/aarch64-vm.sh), file and binutils (readelf);
#   - zig and cargo-zigbuild, pinned in cross/requirements.txt, in .venv-cross.
set -eu
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

packages="rustc-web cargo-web libstd-rust-web-dev:arm64 qemu-user qemu-system-arm cpio file binutils python3-venv libbpf-dev linux-libc-dev gcc"
missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "cross/install-toolchain.sh: missing$missing; run as root to install them" >&2
        exit 1
    fi
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    log "apt-get update"
    apt-get update -q
    log "installing:$missing"
    # shellcheck disable=SC2086 # $missing is a list of package names, one word each
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

if ! .venv-cross/bin/python -c 'import ziglang' >/dev/null 2>&1 \
    || ! .venv-cross/bin/cargo-zigbuild --version >/dev/null 2>&1; then
    log "creating .venv-cross (zig, cargo-zigbuild; pinned)"
    rm -rf .venv-cross
    python3 -m venv .venv-cross
    .venv-cross/bin/pip install -q --disable-pip-version-check -r cross/requirements.txt
fi
