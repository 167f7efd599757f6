#!/bin/sh
# Creates a minimal root file system of this machine's own distribution and release (Debian 12 here)
# with debootstrap, for booting real systemd over it (scripts/systemd-ns.sh, SYSTEMD_NS_LOWER=DIR) in the
# package tests: the packages are installed into a system that has only what a minimal install has.
#
#   scripts/debian-root.sh DIR        (as root; does nothing when DIR is already complete)
#
# DEBIAN_ROOT_ARCH=arm64 makes a root of another architecture for a full-system VM
# (scripts/aarch64-vm.sh): debootstrap's first stage only (--foreign: packages unpacked, not
# configured; the VM runs the second stage when it boots), with udev and kmod (the VM loads its
# virtio drivers) instead of rpm.
#
# The mirror is the one this machine's apt already uses for that release (from /etc/apt/sources.list and
# /etc/apt/sources.list.d/), so nothing here names a mirror; DEBIAN_ROOT_MIRROR=URL overrides it.
# Packages beyond minbase: systemd as init, dbus, sudo (visudo), procps, and rpm (to install the .rpm too).
# About 1-2 minutes and 300 MB.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 64; }
DIR=$1
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (debootstrap)" >&2; exit 1; }
[ -f "$DIR/.complete" ] && exit 0
# Tests running in parallel wait for one debootstrap instead of racing.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
[ -f "$DIR/.complete" ] && exit 0

# shellcheck disable=SC1091 # the running system's
. /etc/os-release
SUITE=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}

mirror_from_apt() {
    # deb822 stanzas (Types/URIs/Suites), then one-line "deb [opts] URI SUITE ..." entries.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit } }
            /^[[:space:]]*$/ { flush(); types = ""; uri = ""; suites = ""; next }
            /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
            /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); split($0, u, " "); uri = u[1] }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
            END { if (!found) flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' "$f"
    done
}

MIRROR=${DEBIAN_ROOT_MIRROR:-$(mirror_from_apt | head -1)}
[ -n "$MIRROR" ] || {
    echo "$0: no apt source for '$SUITE' on this machine; set DEBIAN_ROOT_MIRROR=URL" >&2
    exit 1
}
command -v debootstrap >/dev/null || { echo "$0: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

ARCH=${DEBIAN_ROOT_ARCH:-$(dpkg --print-architecture)}
if [ "$ARCH" = "$(dpkg --print-architecture)" ]; then
    set -- --include=systemd,systemd-sysv,dbus,sudo,procps,rpm
else
    set -- --foreign --arch="$ARCH" --include=systemd,systemd-sysv,dbus,sudo,procps,udev,kmod
fi

echo "==> debootstrap $SUITE ($ARCH) into $DIR (mirror from this machine's apt sources)"
rm -rf "$DIR.tmp"
mkdir -p "$(dirname "$DIR")"
debootstrap --variant=minbase "$@" "$SUITE" "$DIR.tmp" "$MIRROR" >"$DIR.log" 2>&1 || {
    tail -20 "$DIR.log" >&2
    echo "$0: debootstrap failed (full log: $DIR.log)" >&2
    exit 1
}
rm -rf "$DIR"
mv "$DIR.tmp" "$DIR"
touch "$DIR/.complete"
echo "==> $DIR ready ($(du -sh "$DIR" | cut -f1))"
