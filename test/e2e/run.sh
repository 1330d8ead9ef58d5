#!/usr/bin/env bash
# End-to-end tier (DESIGN.md section 5, tier 4): a real libvirtd and QEMU on
# this machine, the real hook installed in qemu.d/network.d, driven by the
# real CLI. Installs and starts what it needs with the project's own scripts,
# builds bin/gallium-net and bin/gallium-net-hook (make build), then runs the Go tests
# tagged e2e against those binaries. Everything it creates is named gte2e-*
# (and the bridge gbr-gte2e) and removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
# make build: deps, and the binaries exactly as make builds them (versioned,
# PIE): a build of its own here left unversioned binaries in bin/ that the
# later tiers then packaged.
make -s build
bash test/setup/libvirtd.sh
export GALLIUM_E2E_BIN="$PWD/bin"
exec go test -tags e2e -count=1 -v -timeout 8m ./test/e2e/ "$@"
