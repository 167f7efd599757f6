#!/bin/sh
# Installs what building, the demo and the tests need on Debian/Ubuntu (run as root):
#   - Debian packages: shadow-utils (passwd, login), sudo (visudo), util-linux (unshare,
#     nsenter), procps, systemd (journald, and systemd as PID 1 in a namespace for the health
#     tests), Python 3 with venv, a C compiler (the stand-in agent), iproute2 (network
#     namespaces), openssl (test certificates);
#   - shellcheck, and Rust >= 1.94 (the AWS SDK's MSRV) if cargo is missing or older: Debian's
#     rustc-web; rustfmt and clippy (rustup components, or Debian's rustfmt-web/rust-web-clippy);
#   - the AWS emulator's Python venv in .venv (moto, pinned in tests/emulator/requirements.txt),
#     with the OCSF validator (pydantic-ocsf, tests/support/requirements-ocsf.txt);
#   - for the exec capture: clang and libbpf-dev (build.rs compiles the eBPF program), tmux (a
#     test's escape case), and auditctl unpacked into .auditctl (the kernel-audit test).
# Idempotent: installs only what is missing.
set -eu
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it installs packages and the tests use mount namespaces)" >&2
    exit 1
fi

packages="passwd login sudo util-linux procps systemd python3 python3-venv gcc libc6-dev ca-certificates git iproute2 openssl shellcheck clang libbpf-dev tmux"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    v=$(cargo --version 2>/dev/null | sed -n 's/^cargo \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$v" ] || return 1
    # shellcheck disable=SC2086 # split "MAJOR MINOR" into $1 $2
    set -- $v
    [ "$1" -gt 1 ] || [ "$2" -ge 94 ]
}

need_rust=0
rust_ok || need_rust=1

if [ -n "$missing" ] || [ "$need_rust" -eq 1 ]; then
    log "apt-get update"
    apt-get update -q
fi
if [ -n "$missing" ]; then
    log "installing:$missing"
    # shellcheck disable=SC2086 # $missing is a list of package names, one word each
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
if [ "$need_rust" -eq 1 ]; then
    log "Rust >= 1.94 not found; installing Debian's rustc-web/cargo-web"
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rustc-web cargo-web \
        && rust_ok; then
        :
    else
        echo "install-deps.sh: this system has no Rust >= 1.94 package; install it with rustup (https://rustup.rs) and run again" >&2
        exit 1
    fi
fi

# The linters of scripts/lint.sh, for the toolchain in use.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        log "installing rustfmt and clippy (rustup components)"
        rustup component add rustfmt clippy
    else
        log "installing rustfmt and clippy (Debian's rustfmt-web, rust-web-clippy)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rustfmt-web rust-web-clippy ||
            echo "install-deps.sh: no rustfmt/clippy package for this toolchain; scripts/lint.sh skips them outside CI" >&2
    fi
fi

if ! .venv/bin/python -c 'import moto, boto3, ocsf, duckdb' >/dev/null 2>&1; then
    log "creating .venv for the AWS emulator, the OCSF validator and the query check (moto, pydantic-ocsf, duckdb; pinned)"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/emulator/requirements.txt \
        -r tests/support/requirements-ocsf.txt -r tests/support/requirements-query.txt
fi
# auditctl for the kernel-audit exec test, extracted into .auditctl: the auditd package is not
# installed (it would start auditing this machine). The test sets its own rule and restores the
# kernel's audit state.
if [ ! -x .auditctl/sbin/auditctl ]; then
    log "extracting auditctl (auditd, libauparse0) into .auditctl"
    tmp=$(mktemp -d)
    chmod 755 "$tmp" # apt's download user writes there
    (cd "$tmp" && apt-get download -q auditd libauparse0) || {
        apt-get update -q && (cd "$tmp" && apt-get download -q auditd libauparse0)
    }
    rm -rf .auditctl
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" .auditctl; done
    rm -rf "$tmp"
fi
log "dependencies ready ($(cargo --version))"
