#!/usr/bin/env bash
# The cluster tier (issue 7; test/cluster/README.md): builds this tree's
# .deb (as make packages does), then runs the whole-cluster test
# (TestCluster: three lab hypervisors, etcd, host networking, VIP, VMs,
# VLAN isolation, MAC uniqueness, three faults, the report) and the single
# lab hypervisor test (TestLabHypervisor: the package's hooks run by
# libvirt after its reload). Needs root; the first run builds the Debian
# image (debootstrap from the configured mirror, ~1 min, cached in
# test/cluster/cache). Output is go test's (-v), streamed.
#   test/cluster/run.sh [-run REGEXP]
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
run_re='^(TestCluster|TestLabHypervisor|TestAppArmorHook)$'
if [[ ${1:-} == -run ]]; then run_re=$2; fi
if [[ $(id -u) != 0 ]]; then echo "test/cluster/run.sh: run it as root" >&2; exit 1; fi
# The package of exactly this tree, as make packages builds it: the newest
# in dist/ is what the tests install.
make -s packages >/dev/null
exec go test -tags cluster -count=1 -v -timeout 50m -run "$run_re" ./test/cluster/
