#!/usr/bin/env bash
# Fetches and extracts the lab's Debian kernel into test/lab/cache/kernel/
# (idempotent; see test/lab/README.md). GALLIUM_LAB_KERNEL=linux-image-...
# pins the package; by default it is what linux-image-amd64 depends on.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
exec go run ./test/lab/cmd/labctl fetch-kernel
