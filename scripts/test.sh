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

# A run from scratch takes about 9 GiB (packages, crates, venvs, the release and test builds;
# docs/development/README.md). Say so up front: running out half-way shows only as ENOSPC.
need_mib=9216
free_mib=$(df -Pm . | awk 'NR == 2 { print $4 }')
if [ "$free_mib" -lt "$need_mib" ]; then
    echo "scripts/test.sh: warning: $free_mib MiB free on $(df -P . | awk 'NR == 2 { print $6 }'); a run from scratch needs about $need_mib MiB (less once target/, .venv and .venv-cross exist)" >&2
fi

./scripts/install-deps.sh

./scripts/lint.sh
echo "==> release builds for x86_64 and aarch64, packages"
./cross/build.sh
./packaging/build.sh
./packaging/check.sh
if [ "${CI:-}" = true ]; then
    # CI builds once: past this point only the binaries and packages of the release builds are
    # read, so their intermediate files (about 2 GiB) go before the test build needs the disk.
    for dir in target/cross/release target/cross/*/release; do
        rm -rf "$dir/deps" "$dir/build" "$dir/.fingerprint" "$dir/incremental" "$dir/examples"
    done
fi
echo "==> cargo test"
cargo test --locked --all-features
