#!/usr/bin/env bash
# Installs everything gallium-net's build, tests and demo need on a Debian 12
# machine, idempotently: Debian packages (only those missing) and Go modules.
# Run as root. Safe to run again and again; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(
  # build
  gcc pkg-config libvirt-dev make git
  # tiers 2-4: namespaces, libvirt + QEMU, the kernel lab
  iproute2 ethtool procps psmisc
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
  busybox-static cpio zstd xz-utils kmod socat
  # cluster state and VIP (arping: the VIP failover test asks who answers)
  keepalived iputils-arping iputils-ping
  # packages and their checks
  dpkg-dev lintian rpm rpmlint
  # diagrams
  graphviz
  # lab hypervisors' Debian root disk (test/cluster/rootfs.sh)
  debootstrap
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing Debian packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # An old or missing package list makes apt-get install fail; refresh once.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/gallium-deps-apt.log 2>&1; then
    apt-get update >/tmp/gallium-deps-apt.log 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/gallium-deps-apt.log 2>&1 ||
      { tail -20 /tmp/gallium-deps-apt.log >&2; echo "deps: apt-get install failed (log: /tmp/gallium-deps-apt.log)" >&2; exit 1; }
  fi
fi
go mod download
