#!/usr/bin/env bash
# Starts a real libvirtd + virtlogd on this machine for the end-to-end tier,
# the way DESIGN.md section 5 describes (no systemd here). Idempotent: does
# nothing when libvirtd already answers. Run as root after deps.sh.
#   test/setup/libvirtd.sh          start (or check) the daemons
#   test/setup/libvirtd.sh reload   make libvirtd re-read its hook directories
set -euo pipefail

conf=/etc/libvirt/qemu.conf
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu
# QEMU runs as root without a security driver: this machine has neither the
# users libvirt expects nor AppArmor/SELinux.
set_conf() { # key value
  if grep -qE "^\s*$1\s*=" "$conf"; then
    sed -i -E "s|^\s*$1\s*=.*|$1 = $2|" "$conf"
  else
    echo "$1 = $2" >>"$conf"
  fi
}
set_conf user '"root"'
set_conf group '"root"'
set_conf security_driver '"none"'
mkdir -p /var/log/libvirt /var/lib/libvirt/qemu /run/libvirt /etc/libvirt/hooks/qemu.d /etc/libvirt/hooks/network.d

running() { pgrep -x "$1" >/dev/null; }

if [[ ${1:-} == reload ]]; then
  pkill -HUP -x libvirtd
  exit 0
fi

# The daemons outlive this script: they must not keep its caller's
# descriptors (a lock held around a test run, a pipe a runner waits on).
daemon() { (
  for fd in /proc/$BASHPID/fd/*; do
    n=${fd##*/}
    ((n > 2)) && eval "exec $n>&-"
  done
  exec "$@" -d
); }
running virtlogd || daemon virtlogd
if ! running libvirtd; then
  daemon libvirtd
fi
for _ in $(seq 1 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.1
done
echo "libvirtd did not answer on qemu:///system within 10 s; see /var/log/libvirt/libvirtd.log" >&2
exit 1
