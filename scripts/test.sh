#!/bin/sh
# Installs what the tests need, then runs them all: formatting and lints, unit and property
# tests, and the integration tests with real components (moto + a strict IMDSv2 stub, real
# shadow-utils/sudo/pwck in private user databases, a private journald, kill -9 failpoints).
# Run as root on Debian/Ubuntu. CI (.ci/run) runs exactly this.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
    echo "==> cargo fmt --check"
    cargo fmt --all --check
    echo "==> cargo clippy"
    cargo clippy --locked --all-targets --all-features -- -D warnings
else
    echo "==> rustfmt/clippy not installed: skipping the lint step"
fi
echo "==> cargo test"
cargo test --locked --all-features
