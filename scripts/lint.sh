#!/bin/sh
# The lint gate of scripts/test.sh: cargo fmt --check, clippy with -D warnings, and shellcheck
# on every shell script of the project (scripts/, cross/, packaging/, the package scriptlets).
# A missing linter is a failure in CI (CI set, as .ci/run does) and a skipped step, with a
# notice, elsewhere; scripts/install-deps.sh installs them.
#
#   scripts/lint.sh
set -eu
cd "$(dirname "$0")/.."

missing=""
cargo fmt --version >/dev/null 2>&1 || missing="$missing rustfmt"
cargo clippy --version >/dev/null 2>&1 || missing="$missing clippy"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
if [ -n "$missing" ]; then
    case ${CI:-} in
        "" | false | 0)
            echo "==> lint: skipped, not installed:$missing (scripts/install-deps.sh installs them; in CI this fails)" >&2
            exit 0
            ;;
        *)
            echo "scripts/lint.sh: not installed:$missing; CI=$CI makes a missing linter a failure: run scripts/install-deps.sh" >&2
            exit 1
            ;;
    esac
fi

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --locked --all-targets --all-features -- -D warnings
echo "==> shellcheck"
# Exclusions are inline (`# shellcheck disable=SCxxxx # reason`), next to the line they excuse.
shellcheck scripts/*.sh cross/*.sh packaging/*.sh packaging/deb/postinst packaging/deb/prerm \
    packaging/deb/postrm .ci/run tests/fixtures/systemctl/capture.sh
shellcheck --shell=sh packaging/rpm/*.sh
