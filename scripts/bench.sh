#!/bin/sh
# Runs the benchmarks: planning CPU (cargo bench) and the system-level figures (bench/bench.py:
# first apply vs bare useradd, IAM calls per sync, steady-state cycle, idle daemon RSS/CPU, binary
# size). Run as root. IDLE=seconds (default 600) sets how long the daemon idles before measuring.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo bench --locked --bench plan
cargo build --release --locked
.venv/bin/python bench/bench.py --idle "${IDLE:-600}"
