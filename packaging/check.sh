#!/bin/sh
# Checks the packages of packaging/build.sh and the unit, failing on any finding that is not
# justified in an override file:
#   - lintian on each .deb (errors and warnings fail; overrides with reasons in
#     packaging/lintian-overrides, shipped in the package);
#   - rpmlint on each .rpm (errors and warnings fail; filters with reasons in packaging/rpmlint.toml);
#   - systemd-analyze security --offline=yes: exposure at most 2.5;
#   - the package metadata a distribution relies on: the glibc floor in Depends/Requires, the
#     conffile/%config(noreplace) for /etc/ssm-companion/config.toml.
# Prints the sizes (for cross/README.md). The package test (tests/package_e2e.rs) checks that
# the packages install, start and work under real systemd.
#
#   packaging/check.sh        (after packaging/build.sh)
set -eu
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
die() { printf 'packaging/check.sh: %s\n' "$*" >&2; exit 1; }

./packaging/install-tools.sh
out=target/packages
debs=$(ls "$out"/*.deb 2>/dev/null || true)
rpms=$(ls "$out"/*.rpm 2>/dev/null || true)
if [ -z "$debs" ] || [ -z "$rpms" ]; then die "no packages in $out: run packaging/build.sh first"; fi

for deb in $debs; do
    log "lintian $deb"
    # --fail-on warning: warnings fail too. The overrides shipped in the package apply.
    lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb"
    dpkg-deb -f "$deb" Depends | grep -q 'libc6 (>= 2.17)' || die "$deb: Depends lacks libc6 (>= 2.17)"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/ssm-companion/config.toml ||
        die "$deb: /etc/ssm-companion/config.toml is not a conffile"
done

for rpm in $rpms; do
    log "rpmlint $rpm"
    # rpmlint exits non-zero on errors; warnings are counted in its summary and fail here.
    report=$(rpmlint -c packaging/rpmlint.toml "$rpm" 2>&1) || { printf '%s\n' "$report"; die "$rpm: rpmlint errors"; }
    printf '%s\n' "$report"
    printf '%s\n' "$report" | grep -q 'checked; 0 errors, 0 warnings' || die "$rpm: rpmlint warnings"
    rpm -qp --requires "$rpm" 2>/dev/null | grep -q '^glibc >= 2.17' || die "$rpm: Requires lacks glibc >= 2.17"
    rpm -qp --configfiles "$rpm" 2>/dev/null | grep -qx /etc/ssm-companion/config.toml ||
        die "$rpm: /etc/ssm-companion/config.toml is not %config"
    rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm" 2>/dev/null |
        grep -q '^/etc/ssm-companion/config.toml c*n' || die "$rpm: config.toml is not %config(noreplace)"
done

# One layout: every architecture's package holds the same paths, and its binary is for that
# architecture (tests/package_e2e.rs installs and runs the x86_64 packages in a container and
# the arm64 .deb in an aarch64 VM).
# Each listing is captured first: in a pipe, a failing dpkg-deb or rpm would go unnoticed and
# two empty lists would compare equal.
layout() {
    case $1 in
        *.deb) list=$(dpkg-deb -c "$1") || die "$1: dpkg-deb -c failed" ;;
        *.rpm) list=$(rpm -qpl "$1" 2>/dev/null) || die "$1: rpm -qpl failed" ;;
    esac
    [ -n "$list" ] || die "$1: the package lists no files"
    case $1 in
        *.deb) printf '%s\n' "$list" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' | sort ;;
        *.rpm) printf '%s\n' "$list" | sort ;;
    esac
}
for kind in deb rpm; do
    first=""
    for p in "$out"/*."$kind"; do
        if [ -z "$first" ]; then first=$p; continue; fi
        layout "$first" >"$out/.layout-a"
        layout "$p" >"$out/.layout-b"
        diff -u "$out/.layout-a" "$out/.layout-b" || die "$p and $first have different file lists"
    done
done
rm -f "$out/.layout-a" "$out/.layout-b"
for p in $debs $rpms; do
    case $p in
        *amd64.deb | *x86_64.rpm) want="x86-64" ;;
        *arm64.deb | *aarch64.rpm) want="ARM aarch64" ;;
        *) die "$p: unknown architecture" ;;
    esac
    tmp=$(mktemp -d)
    case $p in
        *.deb) dpkg-deb -x "$p" "$tmp" ;;
        *.rpm) (cd "$tmp" && rpm2cpio "$OLDPWD/$p" | cpio -idm --quiet) ;;
    esac
    file -b "$tmp/usr/bin/ssm-companion" | grep -q "$want" || die "$p: the binary is not $want"
    rm -rf "$tmp"
done
log "layouts identical across architectures; binaries of the right architecture"

log "systemd-analyze security --offline=yes"
./packaging/check-unit.sh systemd/ssm-companion.service

log "sizes"
for f in target/cross/*/release/ssm-companion $debs $rpms; do
    printf '%10s  %s\n' "$(stat -c %s "$f")" "$f"
done
