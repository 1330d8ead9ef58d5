#!/usr/bin/env bash
# Failover benchmark in the kernel lab (issue 3, "Must show"): an
# active-backup bond (miimon 100) over two NICs, a peer probing every 10 ms,
# the active NIC's cable pulled (QMP set_link) and plugged back, N times
# (default 3). Prints each run and a summary, plus go test -bench metrics:
# switch-ms, host-switch-ms, lost-probes, failback-ms, failback-lost.
#   test/lab/bench-failover.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
GALLIUM_LAB_HOST=1 exec go test -run '^$' -bench '^BenchmarkFailover$' -benchtime "${1:-3}x" -timeout 30m ./test/lab
