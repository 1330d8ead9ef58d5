#!/usr/bin/env bash
# End-to-end tier (DESIGN.md section 5, tier 4): a real libvirtd and QEMU on
# this machine, the real hook installed in qemu.d/network.d, driven by the
# real CLI. Installs and starts what it needs with the project's own scripts,
# builds bin/gallium-net and bin/gallium-net-hook, then runs the Go tests
# tagged e2e against those binaries. Everything it creates is named gte2e-*
# (and the bridge gbr-gte2e) and removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
bash test/setup/deps.sh
bash test/setup/libvirtd.sh
mkdir -p bin
go build -o bin/gallium-net ./cli
CGO_ENABLED=0 go build -ldflags '-s -w' -o bin/gallium-net-hook ./hooks
export GALLIUM_E2E_BIN="$PWD/bin"
exec go test -tags e2e -count=1 -v -timeout 8m ./test/e2e/ "$@"
