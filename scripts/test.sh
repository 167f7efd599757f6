#!/bin/sh
# Installs what the tests need, then runs them all: formatting and lints; the release builds for
# x86_64 and aarch64 (glibc 2.17 floor, aarch64 smoke runs under qemu-user) and their .deb/.rpm
# packages, checked by lintian, rpmlint and systemd-analyze; unit and property tests; the
# integration tests with real components (moto + a strict IMDSv2 stub, real shadow-utils/sudo/
# pwck in private user databases, a private journald, kill -9 failpoints, systemd as PID 1);
# and the package tests (the packages installed and run under real systemd over a minimal
# Debian root). Run as root on Debian/Ubuntu. CI (.ci/run) runs exactly this.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

./scripts/lint.sh
echo "==> release builds for x86_64 and aarch64, packages"
./cross/build.sh
./packaging/build.sh
./packaging/check.sh
echo "==> cargo test"
cargo test --locked --all-features
