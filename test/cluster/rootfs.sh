#!/usr/bin/env bash
# Builds what a "lab hypervisor" boots (test/cluster/README.md):
#
#   1. a Debian root file system image (ext4, raw) made with debootstrap
#      (variant minbase) plus systemd, udev, AppArmor, libvirt-daemon-system,
#      QEMU and keepalived as an operator installs them, and the kernel lab's
#      kernel modules, so that the lab kernel boots it with systemd as PID 1;
#      Debian 12 (bookworm) or Debian 13 (trixie): GALLIUM_CLUSTER_SUITE;
#   2. a small boot initramfs (busybox-static, the modules needed to mount
#      the root disk, the lab's guest agent and its unit) that mounts the
#      image, names the NICs by MAC for udev and switches to systemd.
#
# Both are cached under /var/cache/gallium-net-lab/cluster
# (GALLIUM_CLUSTER_CACHE; shared by every checkout, so a fresh clone reuses
# them), named by a hash of their inputs: the image by this script, the
# suite, the kernel package and the mirror; the initramfs by its content. A
# second run with nothing changed reuses the image (the slow part, minutes)
# and prints the same paths. Prints KEY=VALUE lines on stdout (ROOTFS,
# INITRD, RELEASE, CAPS, AACACHE, KERNEL_DEB, SUITE); progress goes to stderr.
#
#   test/cluster/rootfs.sh                          Debian 12
#   GALLIUM_CLUSTER_SUITE=trixie test/cluster/rootfs.sh   Debian 13
#   GALLIUM_KERNEL_DEB=x.deb ...      use this kernel package (default: the
#                                     kernel lab's, fetched by fetch-kernel.sh)
#
# Needs root (debootstrap and chroot), the mirror in /etc/apt/sources.list(.d)
# (the bookworm source's URI serves trixie too) and the packages of
# test/setup/deps.sh (debootstrap, e2fsprogs, cpio, busybox-static, kmod).
# No loop mounts: mkfs.ext4 -d fills the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/test/cluster
cache=${GALLIUM_CLUSTER_CACHE:-/var/cache/gallium-net-lab/cluster}
labcache=${GALLIUM_LAB_CACHE:-$repo/test/lab/cache}
suite=${GALLIUM_CLUSTER_SUITE:-bookworm}
case $suite in
bookworm | trixie) ;;
*)
  echo "rootfs: GALLIUM_CLUSTER_SUITE=$suite: want bookworm (Debian 12) or trixie (Debian 13)" >&2
  exit 1
  ;;
esac
# What a lab hypervisor runs (DESIGN.md section 5: the end-to-end packages),
# installed as an operator installs a hypervisor: systemd as init with udev,
# libvirt-daemon-system (its units, socket activation, default configuration
# and AppArmor profiles), apparmor (enforcing: Debian's kernel enables it),
# keepalived (its own unit), OpenSSH (how operators reach a hypervisor and
# how libvirt migrates between them: qemu+ssh://; netcat-openbsd is libvirt's
# fallback proxy on the remote side). kmod for modprobe and procps (pgrep,
# ps) for the tests, ping and arping (who answers for the VIP). The network
# managers an installer leaves holding the management IP (issue 15):
# ifupdown (debian-installer's default) and network-manager (systemd-networkd
# is part of systemd); no Recommends, so no wpasupplicant, modemmanager, ppp
# or dnsmasq-base. The same names exist in both suites. This list is part of
# the image's cache key.
packages=(systemd-sysv udev libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients qemu-system-x86
  keepalived iproute2 kmod procps iputils-ping iputils-arping apparmor openssh-server openssh-client netcat-openbsd
  ifupdown network-manager)
# Kernel module folders a hypervisor never needs (about half of the size).
dropmods=(drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/net/wireless
  drivers/bluetooth net/bluetooth net/wireless net/mac80211 sound drivers/iio drivers/hid drivers/input
  drivers/usb drivers/scsi drivers/ata drivers/isdn drivers/mmc drivers/mtd)

log() { echo "rootfs: $*" >&2; }
die() {
  echo "rootfs: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and chroot need it)"
for t in debootstrap mkfs.ext4 cpio depmod modprobe busybox go; do
  command -v "$t" >/dev/null || die "$t not found: run test/setup/deps.sh (as root)"
done
busybox_bin=$(command -v busybox)
file -L "$busybox_bin" | grep -q 'statically linked' || die "$busybox_bin is not static: install busybox-static"

# The mirror: the first deb.debian.org-style URI of a source with suite
# bookworm (this host's own release), from the deb822 files or the one-line
# format; the same mirror serves trixie.
mirror=${GALLIUM_CLUSTER_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm") {print u; exit}}')
fi
if [[ -z $mirror ]]; then
  mirror=$(grep -hE "^deb\s+\S+\s+bookworm\s" /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{print $2; exit}')
fi
[[ -n $mirror ]] || die "no Debian bookworm mirror in /etc/apt/sources.list(.d); set GALLIUM_CLUSTER_MIRROR=http://..."
# Security updates only where the host lists that suite's.
security=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
  awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="'$suite'-security") {print u; exit}}')

# The kernel: the same package the kernel lab boots, so that the modules in
# the image match the kernel QEMU loads.
deb=${GALLIUM_KERNEL_DEB:-}
if [[ -z $deb ]]; then
  line=$(test/lab/fetch-kernel.sh | grep '^kernel ') || die "test/lab/fetch-kernel.sh failed"
  read -r _ kpkg kver _ <<<"$line"
  for d in "$labcache"/debs/"$kpkg"_*.deb; do
    [[ -f $d && $(dpkg-deb -f "$d" Version) == "$kver" ]] && deb=$d
  done
  [[ -n $deb ]] || die "no $kpkg $kver package in $labcache/debs (run test/lab/fetch-kernel.sh)"
fi
[[ -f $deb ]] || die "kernel package $deb not found"
release=$(dpkg-deb -c "$deb" | sed -n 's|.*\./boot/vmlinuz-\(.*\)$|\1|p' | head -1)
[[ -n $release ]] || die "$deb has no boot/vmlinuz-*"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # two builds at once would fight over the same folders

# The image's cache key: the script up to the initramfs part (so editing
# the initramfs part does not rebuild the image), the kernel and the mirror.
key=$( (
  sed '/^# --- boot initramfs/q' "$0" | grep -v '^[[:space:]]*#'
  echo "$suite $(basename "$deb") $mirror $security"
) | sha256sum | cut -c1-16)
img=$cache/rootfs-$suite-$key.img

if [[ -f $img ]]; then
  log "reusing $img"
else
  start=$(date +%s)
  # Outside the repository: the tree has a mounted /proc while it is
  # built, which go list ./... must never walk into.
  work=${TMPDIR:-/var/tmp}/gallium-cluster-build-$key
  root=$work/root
  # debootstrap mounts proc and sys in the tree (and binds the host's /dev
  # in a container), and so does this script for apt: an interrupted run
  # can leave them mounted. Unmount everything below the tree before any
  # removal, and never let rm cross into another file system.
  umount_below() {
    awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m" || die "cannot unmount $m: unmount it by hand, then run again"; done
  }
  cleanup() {
    umount_below
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  cleanup # a previous run's leftovers
  mkdir -p "$work"

  log "debootstrap $suite (minbase) from $mirror"
  debootstrap --variant=minbase --arch=amd64 "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    {
      tail -20 "$work/debootstrap.log" >&2
      die "debootstrap failed (see the lines above)"
    }

  {
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    [[ -z $security ]] || echo "deb $security $suite-security main"
  } >"$root/etc/apt/sources.list"
  # No daemon may start inside the chroot during the installation.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
  log "apt-get install ${packages[*]}"
  if ! { in_root apt-get update && in_root apt-get install -y --no-install-recommends "${packages[@]}"; } >"$work/apt.log" 2>&1; then
    tail -30 "$work/apt.log" >&2
    die "apt-get install in the chroot failed (see the lines above)"
  fi
  in_root apt-get clean
  umount_below
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

  log "kernel modules $release from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" "./lib/modules/$release"
  for d in "${dropmods[@]}"; do rm -rf "$root/lib/modules/$release/kernel/$d"; done
  depmod -b "$root" "$release"

  # The changes to a default install, each one needed by the lab (listed
  # with its reason in test/cluster/README.md, "What the images change"):
  [[ -x $root/usr/sbin/libvirtd ]] || die "no /usr/sbin/libvirtd in the image: libvirt-daemon did not install"
  [[ -f $root/etc/apparmor.d/usr.sbin.libvirtd ]] || die "no libvirtd AppArmor profile in the image: libvirt-daemon-system did not install"
  [[ -e $root/sbin/init ]] || die "no /sbin/init in the image: systemd-sysv did not install"
  # 1. QEMU as root without a security driver (DESIGN.md section 5): the
  #    nested guests boot a kernel from a read-only 9p share, which neither
  #    the libvirt-qemu user nor a per-domain profile would reach. libvirtd
  #    itself stays confined by its AppArmor profile.
  cat >>"$root/etc/libvirt/qemu.conf" <<'EOF'

# gallium-net lab hypervisor (test/cluster/rootfs.sh)
user = "root"
group = "root"
security_driver = "none"
EOF
  # 2. libvirt-daemon-system autostarts its NAT network "default", which
  #    needs dnsmasq (a Recommends, not installed) and is no part of a
  #    Gallium host.
  rm -f "$root/etc/libvirt/qemu/networks/autostart/default.xml"
  # 3. The kernel lab's module set, loaded at boot as the kernel lab does
  #    (virtio console and 9p for the lab agent and its shares; bonding and
  #    dummy without their default devices, as in the kernel lab).
  mkdir -p "$root/etc/modules-load.d" "$root/etc/modprobe.d"
  printf '%s\n' virtio_console 9pnet_virtio 9p vhost_net >"$root/etc/modules-load.d/gallium-lab.conf"
  printf 'options bonding max_bonds=0\noptions dummy numdummies=0\n' >"$root/etc/modprobe.d/gallium-lab.conf"
  # 4. No serial login prompt: nobody logs in, and under TCG a getty is a
  #    process less.
  ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
  # 5. The image is installed, not being installed: systemd's "first boot
  #    after an update" jobs (ldconfig, the journal catalog, hwdb;
  #    ConditionNeedsUpdate) ran once here, as on an operator's host, and
  #    do not run again at every boot of the pristine snapshot.
  in_root ldconfig
  touch "$root/etc/.updated" "$root/var/.updated"
  # 6. Every network manager installed, none holding an adapter: each lab
  #    hypervisor's scenario configures and starts the one its installer
  #    would have left (hv1 ifupdown, hv2 NetworkManager, hv3
  #    systemd-networkd; test/cluster/scenario_takeover.go). ifupdown's
  #    networking.service stays enabled (as Debian ships it) with only the
  #    loopback; NetworkManager (which its postinst enables) and
  #    systemd-networkd are disabled.
  cat >"$root/etc/network/interfaces" <<'EOF'
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback
EOF
  mkdir -p "$root/etc/network/interfaces.d"
  in_root systemctl disable NetworkManager.service NetworkManager-wait-online.service NetworkManager-dispatcher.service \
    systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service >>"$work/apt.log" 2>&1 ||
    {
      tail -5 "$work/apt.log" >&2
      die "systemctl disable of the network managers failed (see the lines above)"
    }
  for u in multi-user.target.wants/NetworkManager.service sockets.target.wants/systemd-networkd.socket multi-user.target.wants/systemd-networkd.service; do
    [[ ! -L $root/etc/systemd/system/$u ]] || die "$u still enabled in the image"
  done
  [[ -L $root/etc/systemd/system/multi-user.target.wants/networking.service ]] || die "networking.service (ifupdown) not enabled in the image"
  echo "lab-hypervisor" >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
  : >"$root/etc/fstab"
  # The device nodes come from devtmpfs at boot.
  umount_below
  rm -rf --one-file-system "${root:?}"/dev/*

  # Size: the content plus room for what runs (logs, libvirt state, the
  # project's package, a test's files); the file is sparse.
  used_mb=$(du -sm "$root" | cut -f1)
  size_mb=$((used_mb * 12 / 10 + 768))
  log "mkfs.ext4 -d ($used_mb MB of files, ${size_mb} MB image)"
  rm -f "$img.tmp"
  mkfs.ext4 -q -F -L gallium-root -d "$root" "$img.tmp" "${size_mb}M" >"$work/mkfs.log" 2>&1 ||
    {
      cat "$work/mkfs.log" >&2
      die "mkfs.ext4 -d failed"
    }
  mv "$img.tmp" "$img"
  cp "$work/apt.log" "${img%.img}.apt.log"
  trap - EXIT
  cleanup
  # Older images go (each is about a gigabyte).
  for o in "$cache"/rootfs-"$suite"-*.img; do [[ $o == "$img" ]] || rm -f "$o" "${o%.img}.apt.log"; done
  # Logs of earlier versions of this script, named without the suite.
  find "$cache" -maxdepth 1 -name 'rootfs-*.apt.log' ! -name 'rootfs-bookworm-*' ! -name 'rootfs-trixie-*' -delete
  for o in "$cache"/caps-"$suite"-* "$cache"/aa-"$suite"-*; do [[ $o == "$cache/caps-$suite-$key" || $o == "$cache/aa-$suite-$key" ]] || rm -rf "$o"; done
  log "built $img in $(($(date +%s) - start)) s ($(du -m "$img" | cut -f1) MB on disk, $size_mb MB apparent)"
fi

# --- boot initramfs ----------------------------------------------------
# Small and rebuilt whenever its content changes (seconds): the agent and
# its unit live here rather than in the image, so changing them does not
# rebuild the image. init copies them into the root (the disk is a
# throwaway snapshot) and switches to systemd.
stage=$(mktemp -d "$cache/.initrd-XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,newroot,mods}
cp "$busybox_bin" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$stage/gallium-lab-agent" ./test/lab/agent
# The lab agent runs as a systemd service from early boot on: the test's
# hands in the hypervisor (test/lab/agent). Not PID 1 here, so systemd
# owns every daemon.
cat >"$stage/gallium-lab-agent.service" <<'EOF'
[Unit]
Description=gallium-net lab agent (runs the cluster test's commands)
DefaultDependencies=no
After=systemd-modules-load.service
Before=sysinit.target

[Service]
ExecStart=/sbin/gallium-lab-agent
Restart=always
RestartSec=1
# What it runs (a reboot, a daemon started by hand in a test) outlives it.
KillMode=process
EOF
# The modules to mount an ext4 root on virtio-blk, in load order, from the
# kernel package itself (modprobe resolves the dependencies). Kept per
# kernel package in bootmods-*: unpacking the package takes seconds.
bootmods=$cache/bootmods-$(basename "$deb" .deb)
if [[ ! -f $bootmods/order ]]; then
  modtmp=$(mktemp -d "$cache/.mods-XXXXXX")
  # Only the folders those modules live in.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$modtmp" --wildcards "./lib/modules/$release/modules.*" \
    "./lib/modules/$release/kernel/drivers/virtio" "./lib/modules/$release/kernel/drivers/block" \
    "./lib/modules/$release/kernel/fs" "./lib/modules/$release/kernel/lib" "./lib/modules/$release/kernel/crypto" \
    "./lib/modules/$release/kernel/arch"
  depmod -b "$modtmp" "$release"
  rm -rf "$bootmods.tmp" && mkdir -p "$bootmods.tmp"
  : >"$bootmods.tmp/order"
  for m in virtio_pci virtio_blk ext4; do
    modprobe -d "$modtmp" -S "$release" --show-depends "$m" | while read -r kind path _; do
      [[ $kind == insmod ]] || continue
      b=$(basename "$path")
      grep -qx "$b" "$bootmods.tmp/order" && continue
      cp "$path" "$bootmods.tmp/$b"
      echo "$b" >>"$bootmods.tmp/order"
    done
  done
  rm -rf "$modtmp"
  grep -q '^virtio_blk\.ko' "$bootmods.tmp/order" || die "no virtio_blk module in $deb"
  for o in "$cache"/bootmods-*; do [[ $o == "$bootmods.tmp" ]] || rm -rf "$o"; done
  mv "$bootmods.tmp" "$bootmods"
fi
cp "$bootmods"/* "$stage/mods/"
# libvirtd's QEMU capabilities, saved by package cluster from a first boot
# of this image (cluster.Boot): with them libvirtd skips probing both QEMU
# binaries (~4 s per boot, more under load). libvirt checks them (QEMU's
# and its own ctime and version, fixed in the image) and probes again if
# they do not fit, so a stale copy only costs time.
caps=$cache/caps-$suite-$key
if compgen -G "$caps/*.xml" >/dev/null; then
  mkdir -p "$stage/caps"
  cp "$caps"/*.xml "$stage/caps/"
fi
# AppArmor's compiled profiles, saved the same way after a first boot:
# apparmor.service then loads them instead of compiling every profile
# (30-60 s of one vCPU under TCG). apparmor_parser checks each against its
# profile's time and the kernel's features and compiles again if stale.
aacache=$cache/aa-$suite-$key
if [[ -f $aacache/cache.tar ]]; then
  cp "$aacache/cache.tar" "$stage/aacache.tar"
fi
cat >"$stage/init" <<'EOF'
#!/bin/sh
# gallium-net lab hypervisor boot initramfs (test/cluster/rootfs.sh):
# mount the root disk, put the agent and its unit into it, name the NICs,
# switch to systemd.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "boot: insmod $m failed" >/dev/console; done
root=/dev/vda init=/lib/systemd/systemd
nics=
for a in $(cat /proc/cmdline); do
	case $a in
	root=*) root=${a#root=} ;;
	init=*) init=${a#init=} ;;
	gallium.nic=*) nics="$nics ${a#gallium.nic=}" ;;
	esac
done
i=0
until [ -b "$root" ]; do
	i=$((i + 1))
	[ $i -le 200 ] || { echo "boot: no $root after 10 s" >/dev/console; exec sh; }
	sleep 0.05
done
mount -t ext4 -o rw "$root" /newroot || { echo "boot: mount $root failed" >/dev/console; exec sh; }
cp /gallium-lab-agent /newroot/sbin/gallium-lab-agent
cp /gallium-lab-agent.service /newroot/etc/systemd/system/
mkdir -p /newroot/etc/systemd/system/sysinit.target.wants
ln -sf ../gallium-lab-agent.service /newroot/etc/systemd/system/sysinit.target.wants/
# The NICs' names (gallium.nic=NAME,MAC): udev gives them at every boot
# from these .link files, as an operator's naming would on a real host.
# PermanentMACAddress and the driver, so that a bond carrying the same
# MAC is never matched.
mkdir -p /newroot/etc/systemd/network
rm -f /newroot/etc/systemd/network/10-gallium-lab-*.link
for n in $nics; do
	printf '[Match]\nPermanentMACAddress=%s\nDriver=virtio_net\n\n[Link]\nName=%s\n' "${n#*,}" "${n%%,*}" \
		>/newroot/etc/systemd/network/10-gallium-lab-${n%%,*}.link
done
if [ -d /caps ]; then
	mkdir -p /newroot/var/cache/libvirt/qemu/capabilities
	cp /caps/*.xml /newroot/var/cache/libvirt/qemu/capabilities/
fi
if [ -f /aacache.tar ] && [ ! -e /newroot/var/cache/apparmor/.gallium-lab ]; then
	mkdir -p /newroot/var/cache/apparmor
	tar -x -f /aacache.tar -C /newroot/var/cache/apparmor && touch /newroot/var/cache/apparmor/.gallium-lab
fi
umount /proc /sys /dev
exec switch_root /newroot "$init"
EOF
chmod 755 "$stage/init"
ihash=$( (cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum; find . -type l -printf '%p %l\n' | sort) | sha256sum | cut -c1-16)
initrd=$cache/boot-$suite-$ihash.cpio
if [[ ! -f $initrd ]]; then
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  for o in "$cache"/boot-"$suite"-*.cpio; do [[ $o == "$initrd" ]] || rm -f "$o"; done
  log "initramfs $initrd ($(du -k "$initrd" | cut -f1) KB)"
fi

echo "ROOTFS=$img"
echo "INITRD=$initrd"
echo "RELEASE=$release"
echo "CAPS=$caps"
echo "AACACHE=$aacache"
echo "SUITE=$suite"
echo "KERNEL_DEB=$deb"
