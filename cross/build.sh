#!/bin/sh
# Builds the release binary for x86_64 and aarch64 Linux, linked against glibc 2.17 symbols at
# most (Amazon Linux 2, RHEL/CentOS 7 and every newer distribution), then checks each one:
# the architecture (`file`), the highest GLIBC symbol version (`readelf`), and that it runs —
# natively for x86_64, under qemu-user for aarch64 (single-threaded commands only: any thread
# creation hangs under qemu-user on these machines, see cross/README.md).
#
#   cross/build.sh [x86_64] [aarch64]     (default: both; run as root the first time, to install)
#
# Toolchain: Debian's Rust (rustc-web, with the aarch64 standard library) and zig as C compiler
# and linker through cargo-zigbuild (cross/requirements.txt, in .venv-cross). rustup's toolchain
# here is x86_64-only and cannot download targets. Output:
#   target/cross/<triple>/release/ssm-companion
set -eu
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
die() { printf 'cross/build.sh: %s\n' "$*" >&2; exit 1; }

GLIBC_FLOOR=2.17
arches=${*:-x86_64 aarch64}

./cross/install-toolchain.sh

# Debian's cargo and rustc ahead of rustup's; the venv's python3 provides `python3 -m ziglang`,
# which cargo-zigbuild runs when no `zig` is on PATH. Variables a parent cargo may have set
# would point at rustup's toolchain: drop them.
unset RUSTC RUSTDOC RUSTUP_TOOLCHAIN CARGO RUSTC_WRAPPER
PATH="$PWD/.venv-cross/bin:/usr/bin:$PATH"
export PATH
export CARGO_TARGET_DIR="$PWD/target/cross"
log "$(cargo --version), $(rustc --version), zig $(python3 -m ziglang version)"

# The eBPF exec-capture program, compiled once with the pinned zig (BPF bytecode with CO-RE
# relocations is architecture-independent) and embedded by both builds (build.rs).
bpf=$CARGO_TARGET_DIR/exec.bpf.o
mkdir -p "$CARGO_TARGET_DIR"
log "compiling bpf/exec.bpf.c once for both architectures"
python3 -m ziglang cc -target bpfel-freestanding-none -O2 -g -Wall \
    -I/usr/include -I"/usr/include/$(gcc -print-multiarch)" -c bpf/exec.bpf.c -o "$bpf" ||
    die "compiling bpf/exec.bpf.c failed (it needs libbpf-dev and linux-libc-dev: scripts/install-deps.sh)"
SSM_COMPANION_BPF_OBJECT=$bpf
export SSM_COMPANION_BPF_OBJECT

# One cargo run for all architectures: its scheduler overlaps one target's single-threaded LTO
# link with the other's compilation (two runs one after the other took 31 minutes on 2 cores).
targets=""
for arch in $arches; do
    case $arch in
        x86_64 | aarch64) targets="$targets --target $arch-unknown-linux-gnu.$GLIBC_FLOOR" ;;
        *) die "unknown architecture '$arch' (x86_64 or aarch64)" ;;
    esac
done
log "building$(echo "$targets" | sed 's/ --target / /g') (glibc $GLIBC_FLOOR)"
# shellcheck disable=SC2086 # one word per flag and triple
cargo zigbuild --locked --release $targets

for arch in $arches; do
    case $arch in
        x86_64) want="x86-64" ;;
        aarch64) want="ARM aarch64" ;;
    esac
    triple=$arch-unknown-linux-gnu
    bin=$CARGO_TARGET_DIR/$triple/release/ssm-companion

    desc=$(file -b "$bin")
    case $desc in
        *"$want"*stripped*) ;;
        *) die "$bin: expected a stripped $want executable, got: $desc" ;;
    esac
    glibc=$(readelf --dyn-syms -W "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)
    [ -n "$glibc" ] || die "$bin: no GLIBC symbol versions found"
    if [ "$(printf '%s\n%s\n' "$glibc" "$GLIBC_FLOOR" | sort -V | tail -1)" != "$GLIBC_FLOOR" ]; then
        die "$bin needs GLIBC_$glibc, above the $GLIBC_FLOOR floor"
    fi

    # Smoke runs: commands that start no thread (they must work under qemu-user).
    if [ "$arch" = "$(uname -m)" ]; then run=""; else run="qemu-$arch"; fi
    config=$(mktemp)
    printf '[accounts]\nsource = "file"\n' >"$config"
    $run "$bin" version | grep -q "target: $triple" || die "$bin version: wrong target"
    $run "$bin" --config "$config" config check >/dev/null || die "$bin config check failed"
    $run "$bin" --config "$config" iam-policy --for operator | grep -q '"ssm:GetInventory"' ||
        die "$bin iam-policy failed"
    printf '[accounts]\ninterval = "5 parsecs"\n' >"$config"
    rc=0
    $run "$bin" --config "$config" config check >/dev/null 2>&1 || rc=$?
    rm -f "$config"
    [ "$rc" -eq 78 ] || die "$bin config check of a bad config: exit $rc, want 78"

    size=$(stat -c %s "$bin")
    log "$triple: $desc"
    log "$triple: highest symbol GLIBC_$glibc, $size bytes ($(numfmt --to=iec-i --suffix=B "$size")), smoke runs ok${run:+ (under $run)}"
done
