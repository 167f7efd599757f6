#!/bin/sh
# Builds the .deb and .rpm packages for x86_64 and aarch64 from the binaries of cross/build.sh
# (run that first; `make packages` does both), with the man pages generated from the CLI.
#
#   packaging/build.sh [x86_64] [aarch64]      (default: both)
#
# Output in target/packages/:
#   ssm-companion_<version>-1_amd64.deb   ssm-companion_<version>-1_arm64.deb
#   ssm-companion-<version>-1.x86_64.rpm  ssm-companion-<version>-1.aarch64.rpm
# The layout of both formats is described in docs/usage/packaging.md.
set -eu
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
die() { printf 'packaging/build.sh: %s\n' "$*" >&2; exit 1; }

arches=${*:-x86_64 aarch64}
out=target/packages
cross=target/cross

./packaging/install-tools.sh

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || die "no version in Cargo.toml"
head -1 packaging/deb/changelog | grep -q "^ssm-companion ($version-1) " ||
    die "packaging/deb/changelog does not start with version $version-1: add an entry"

log "man pages, changelog"
rm -rf target/man
cargo run --quiet --locked --example man -- target/man >/dev/null
gzip -9n target/man/*.1
# The upstream changelog under the name Debian policy (and lintian) expects, in both formats.
gzip -9n -c CHANGELOG.md >target/man/changelog.gz

mkdir -p "$out"
for arch in $arches; do
    case $arch in x86_64) debarch=amd64 ;; aarch64) debarch=arm64 ;; *) die "unknown architecture '$arch'" ;; esac
    # Only this version's packages stay (the tests pick the one package of each kind).
    rm -f "$out"/ssm-companion_*_"$debarch".deb "$out"/ssm-companion-*."$arch".rpm
    triple=$arch-unknown-linux-gnu
    bin=$cross/$triple/release/ssm-companion
    [ -x "$bin" ] || die "$bin is missing: run cross/build.sh $arch first"
    log "$triple: deb"
    # The binary is already stripped (release profile); the host's strip cannot read aarch64.
    CARGO_TARGET_DIR=$cross cargo deb --no-build --no-strip --target "$triple" --output "$out/"
    log "$triple: rpm"
    # gzip, not zstd: the rpm of Amazon Linux 2 and RHEL 7 cannot read zstd payloads.
    cargo generate-rpm --target "$triple" --target-dir "$cross" --payload-compress gzip \
        --auto-req disabled --output "$out/"
done
# The checksums operators paste into the cloud-init recipe (docs/usage/packaging.md), for exactly the
# packages of this build.
(cd "$out" && sha256sum ssm-companion_*.deb ssm-companion-*.rpm >SHA256SUMS)
ls -l "$out"
