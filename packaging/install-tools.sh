#!/bin/sh
# Installs the packaging tools of packaging/build.sh and packaging/check.sh (as root; idempotent):
# cargo-deb and cargo-generate-rpm (pinned, from crates.io), lintian, rpmlint, rpm and cpio (Debian
# packages), debootstrap (the minimal Debian root of the package test).
set -eu

log() { printf '==> %s\n' "$*"; }

CARGO_DEB=3.8.0
CARGO_GENERATE_RPM=0.21.1

have() { "$@" >/dev/null 2>&1; }

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB"; then
    log "cargo install cargo-deb $CARGO_DEB"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB"
fi
if ! have cargo generate-rpm --version || ! cargo generate-rpm --version 2>/dev/null | grep -q " $CARGO_GENERATE_RPM\$"; then
    log "cargo install cargo-generate-rpm $CARGO_GENERATE_RPM"
    cargo install --locked --quiet cargo-generate-rpm --version "$CARGO_GENERATE_RPM"
fi

missing=""
for p in lintian rpmlint rpm cpio debootstrap gzip; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "packaging/install-tools.sh: missing$missing; run as root" >&2; exit 1; }
    log "apt-get update"
    apt-get update -q
    log "installing:$missing"
    # shellcheck disable=SC2086 # $missing is a list of package names, one word each
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
