#!/bin/sh
# Runs the benchmarks: planning CPU (cargo bench), the system-level accounts figures
# (bench/bench.py: first apply vs bare useradd, IAM calls per sync, steady-state cycle, idle daemon
# RSS/CPU, binary size) and the health figures (cargo bench --bench doctor: doctor wall time when
# all is well and when every endpoint times out, idle daemon with health on). Run as root.
# IDLE=seconds (default 600) sets how long the daemons idle before measuring.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo bench --locked --bench plan
cargo build --release --locked
.venv/bin/python bench/bench.py --idle "${IDLE:-600}"
BENCH_IDLE_SECS="${IDLE:-600}" cargo bench --locked --bench doctor
