#!/bin/sh
# Checks the hardening of a systemd unit: systemd-analyze security --offline=yes, where an
# exposure above 2.8 fails and the whole report is printed, so the weak settings are visible.
# (tests/package_e2e.rs runs `systemd-analyze verify` on the installed unit.)
#
#   packaging/check-unit.sh [UNIT]     (default: systemd/ssm-companion.service)
set -eu

unit=${1:-$(dirname "$0")/../systemd/ssm-companion.service}
die() { printf 'packaging/check-unit.sh: %s\n' "$*" >&2; exit 1; }
[ -f "$unit" ] || die "$unit: no such unit file"

# The report is captured before it is shown: a pipe into `tail` would lose the exit status.
# --threshold is on the 0-100 scale: 28 is an exposure of 2.8 (2.4 before the exec capture's
# capabilities: docs/usage/packaging.md says what each one adds).
if ! report=$(systemd-analyze security --offline=yes --threshold=28 --no-pager "$unit" 2>&1); then
    printf '%s\n' "$report" >&2
    die "$unit: exposure above 2.8 (systemd-analyze security, report above): harden the unit, do not raise the threshold"
fi
printf '%s\n' "$report" | tail -n 1
