#!/bin/sh
# Runs the benchmarks: planning CPU (cargo bench), the first sync with real NSS lookups
# (cargo bench --bench lookups), the system-level accounts figures
# (bench/bench.py: first apply vs bare useradd, IAM calls per sync, steady-state cycle, idle daemon
# RSS/CPU, binary size) and the health figures (cargo bench --bench doctor: doctor wall time when
# all is well and when every endpoint times out, idle daemon with health on), the audit figures
# (cargo bench --bench audit: spool throughput, journal line -> spool latency, daemon RSS/CPU idle
# and at 100 sudo/s), audit shipping (cargo bench --bench ship: objects per core, a 1,000,000-event
# backlog shipped to the emulator's S3, event -> S3 latency, PUTs per host-hour), the exec capture
# (cargo bench --bench exec: cost per exec and per syscall, loss and daemon CPU per backend), the
# fleet mapping (cargo bench --bench fleet: publish for 3 accounts x 1,000 principals, 50 daemons
# behind an S3 budget) and, when the
# packages are built (make packages), the cold start of the package under systemd
# (cargo bench --features package-tests --bench cold_start). Run as root.
# IDLE=seconds (default 600) sets how long the daemons idle before measuring.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo bench --locked --bench plan
cargo bench --locked --bench lookups
cargo build --release --locked
.venv/bin/python bench/bench.py --idle "${IDLE:-600}"
BENCH_IDLE_SECS="${IDLE:-600}" cargo bench --locked --bench doctor
BENCH_IDLE_SECS="${IDLE:-600}" cargo bench --locked --bench audit
cargo bench --locked --bench ship
cargo bench --locked --bench exec
cargo bench --locked --bench fleet
if ls target/packages/*_amd64.deb >/dev/null 2>&1; then
    cargo bench --locked --features package-tests --bench cold_start
else
    echo "==> no package in target/packages: skipping the cold-start bench (run make packages first)"
fi
