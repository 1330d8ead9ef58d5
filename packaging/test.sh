#!/usr/bin/env bash
# The pkg tier (test/run-tiers.sh pkg, part of `make test`): builds the .deb
# and .rpm from bin/ (make build), lints them, checks the .rpm's metadata with
# rpm -qp, and installs, upgrades, removes and purges the .deb with dpkg on
# this machine next to the running libvirtd (test/setup/libvirtd.sh).
# Run as root. Prints "--- PASS: name" / "--- FAIL: name" per check and
# stops at the first failure; everything it creates (package, domain,
# libvirt network, bridge gtpkg-br0) is removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

[[ $(id -u) -eq 0 ]] || { echo "packaging/test.sh: run as root (it installs the package)" >&2; exit 1; }
# GALLIUM_PKG_BIN: where the binaries to package are (default bin/, from
# make build). GALLIUM_PKG_DIR: the packaging definitions (default
# packaging/; a changed copy shows that the checks catch a broken package).
bindir=${GALLIUM_PKG_BIN:-bin}
pkgsrc=${GALLIUM_PKG_DIR:-packaging}
rpmlint_conf=$(realpath "$pkgsrc/rpmlint.toml")
for b in "$bindir/gallium-net" "$bindir/gallium-net-hook"; do
  [[ -x $b ]] || { echo "packaging/test.sh: $b missing: run 'make build' first" >&2; exit 1; }
done

pkg=gallium-net
work=$(mktemp -d /tmp/gallium-pkgtest.XXXXXX)
br=gtpkg-br0
dom=gtpkg-dom
net=gtpkg-net
cli_net=gtpkg-cli
cli_br=gbr-gtpkg
hookbin=/usr/sbin/gallium-net-hook
links=(/etc/libvirt/hooks/qemu.d/gallium-net /etc/libvirt/hooks/network.d/gallium-net)
debuglog=$work/libvirtd-debug.log
declare -A foreign=() # hook links that were there before and belong to no package
log_outputs=""

die() { echo "    $*" >&2; exit 1; }
note() { echo "    $*"; }

# run NAME FUNCTION: runs one check in a subshell with errexit (so any failing
# command fails the check), prints PASS/FAIL/SKIP like go test (exit 77 is a
# skip that says why; a failure under GALLIUM_STRICT=1), stops on failure. State a later step needs must be
# set outside, since the subshell's variables are lost.
run() {
  local name=$1 t0=$SECONDS rc
  shift
  set +e
  # No pipefail inside: `producer | grep -q` would fail whenever grep stops
  # reading early and the producer gets SIGPIPE.
  (set -e +o pipefail; "$@")
  rc=$?
  set -e
  if ((rc == 0)); then
    echo "--- PASS: $name ($((SECONDS - t0))s)"
  elif ((rc == 77)) && [[ ${GALLIUM_STRICT:-} != 1 ]]; then
    echo "--- SKIP: $name ($((SECONDS - t0))s)"
  else
    echo "--- FAIL: $name ($((SECONDS - t0))s)"
    exit 1
  fi
}

libvirtd_pid() { pgrep -x libvirtd | head -1; }

# The proof that libvirtd itself ran the hook: with util.command at debug
# level, libvirtd logs every program it runs ("About to run ... PATH ...").
debug_on() { virt-admin daemon-log-filters "1:util.command" >/dev/null; virt-admin daemon-log-outputs "$log_outputs 1:file:$debuglog" >/dev/null; }
debug_off() { virt-admin daemon-log-filters "" >/dev/null; virt-admin daemon-log-outputs "$log_outputs" >/dev/null; }

cleanup() {
  local rc=$?
  set +e
  virsh -q destroy "$dom" >/dev/null 2>&1
  virsh -q undefine "$dom" >/dev/null 2>&1
  virsh -q net-destroy "$net" >/dev/null 2>&1
  virsh -q net-undefine "$net" >/dev/null 2>&1
  virsh -q net-destroy "$cli_net" >/dev/null 2>&1
  virsh -q net-undefine "$cli_net" >/dev/null 2>&1
  [[ -n $log_outputs ]] && debug_off
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed' && dpkg --purge "$pkg" >/dev/null 2>&1
  ip link del "$br" 2>/dev/null
  ip link del "$cli_br" 2>/dev/null
  # Put back hook links another test or an operator had placed by hand.
  local l restored=0
  for l in "${!foreign[@]}"; do
    mkdir -p "$(dirname "$l")" && ln -sfn "${foreign[$l]}" "$l" && restored=1
  done
  ((restored)) && bash test/setup/libvirtd.sh reload
  if ((rc != 0)); then
    # Keep the evidence (libvirtd command logs, dpkg and lint output).
    mkdir -p /tmp/gallium-pkgtest-failed
    cp "$work"/*.log "$work"/*.out /tmp/gallium-pkgtest-failed/ 2>/dev/null
    echo "packaging/test.sh: logs kept in /tmp/gallium-pkgtest-failed" >&2
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- build -------------------------------------------------------------------
# Compiled once: three builds with `go run` cost a compile check each.
go build -o "$work/pkgbuild" ./packaging/build
version=$("$work/pkgbuild" -print-version)
upgrade_version=$version.pkgtest1
conflict_version=$version.pkgtest2

build() {
  "$work/pkgbuild" -bin "$bindir" -out "$work/v1" -packaging "$pkgsrc" -version "$version" >"$work/v1.list"
  deb=$(grep '\.deb$' "$work/v1.list")
  rpm=$(grep '\.rpm$' "$work/v1.list")
  [[ -f $deb && -f $rpm ]] || die "builder did not report a .deb and an .rpm: $(cat "$work/v1.list")"
  # A newer build with the same default config (the usual upgrade) and one
  # whose default config.yaml changed (the upgrade that must ask or keep).
  # Both are test artifacts: gzip instead of nfpm's slow pure-Go xz.
  cp -r "$pkgsrc" "$work/pkg-v2"
  sed -i 's/^  compression: xz$/  compression: gzip/' "$work/pkg-v2/nfpm.yaml"
  cp -r "$work/pkg-v2" "$work/pkg-v3"
  echo "# a default added by a newer release (packaging/test.sh)" >>"$work/pkg-v3/etc/config.yaml"
  "$work/pkgbuild" -bin "$bindir" -out "$work/v2" -packaging "$work/pkg-v2" -version "$upgrade_version" -formats deb >/dev/null
  "$work/pkgbuild" -bin "$bindir" -out "$work/v3" -packaging "$work/pkg-v3" -version "$conflict_version" >/dev/null
  note "version $version; $(du -k "$deb" | cut -f1) KiB .deb, $(du -k "$rpm" | cut -f1) KiB .rpm"
}
run build build
deb=$(grep '\.deb$' "$work/v1.list")
rpm=$(grep '\.rpm$' "$work/v1.list")
deb2=$(ls "$work"/v2/*.deb)
deb3=$(ls "$work"/v3/*.deb)
rpm3=$(ls "$work"/v3/*.rpm)

# --- lint --------------------------------------------------------------------
lint_deb() {
  local rc=0
  lintian --info --pedantic --fail-on error "$deb" >"$work/lintian.out" 2>&1 || rc=$?
  grep -E '^[EWIPX]: ' "$work/lintian.out" | sed 's/^/    /' || true
  ((rc == 0)) || die "lintian failed (exit $rc) on $(basename "$deb"): $(grep -v '^N:' "$work/lintian.out")"
  ! grep -qE '^E: ' "$work/lintian.out" || die "lintian reports errors on $(basename "$deb")"
}
run lintian lint_deb

deb_metadata() {
  local depends recommends lib
  depends=$(dpkg-deb -f "$deb" Depends)
  recommends=$(dpkg-deb -f "$deb" Recommends)
  [[ $(dpkg-deb -f "$deb" Version) == "$version-1" ]] || die "deb version $(dpkg-deb -f "$deb" Version), want $version-1"
  # Every alternative must bring a libvirtd (Debian 13's QEMU driver alone
  # brings none), the preferred one with its units.
  [[ $depends == *"libvirt-daemon-system (>= 6.5) | libvirt-daemon (>= 6.5),"* ]] || die "deb Depends lacks a libvirt daemon (libvirt-daemon-system | libvirt-daemon): $depends"
  [[ $depends == *"libvirt-daemon-driver-qemu (>= 6.5)"* ]] || die "deb Depends lacks the QEMU driver: $depends"
  [[ $depends == *"libvirt-clients"* ]] || die "deb Depends lacks libvirt-clients: $depends"
  [[ $recommends == *keepalived* ]] || die "deb does not recommend keepalived: $recommends"
  # Shared libraries the binaries load must come from declared packages.
  for lib in $(readelf -d "$bindir/gallium-net" "$bindir/gallium-net-hook" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u); do
    case $lib in
    libc.so.*) [[ $depends == *libc6* ]] || die "binaries link $lib but Depends has no libc6: $depends" ;;
    libvirt.so.*) [[ $depends == *libvirt0* ]] || die "binaries link $lib but Depends has no libvirt0: $depends" ;;
    esac
  done
  dpkg-deb --ctrl-tarfile "$deb" | tar -t | sort | tr '\n' ' ' >"$work/deb.control"
  for f in ./conffiles ./preinst ./postinst ./prerm ./postrm; do
    grep -q " $f \|^$f " "$work/deb.control" || die "deb control archive lacks $f: $(cat "$work/deb.control")"
  done
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/deb.conffiles"
  diff <(printf '%s\n' /etc/gallium-net/cluster.yaml.example /etc/gallium-net/config.yaml) <(sort "$work/deb.conffiles") >&2 ||
    die "deb conffiles differ from the expectation"
  # Maintainer scripts: valid sh, and an argument dpkg never passes is an
  # error (Debian policy), not silently ignored.
  mkdir -p "$work/ctrl"
  dpkg-deb --control "$deb" "$work/ctrl"
  local sc rc
  for sc in preinst postinst prerm postrm; do
    sh -n "$work/ctrl/$sc" || die "deb $sc is not valid sh"
    rc=0
    sh "$work/ctrl/$sc" no-such-action >/dev/null 2>&1 || rc=$?
    ((rc != 0)) || die "deb $sc accepts the unknown argument 'no-such-action'"
  done
  note "Depends: $depends"
}
run deb-metadata deb_metadata

lint_rpm() {
  # nfpm's rpm payload uses absolute paths and rpmlint unpacks it with
  # `rpm2cpio | cpio -id`: without --no-absolute-filenames cpio would write
  # the package's files into / (it did once). The wrapper forces it.
  mkdir -p "$work/cpio" "$work/rpmlint"
  printf '#!/bin/sh\nexec /usr/bin/cpio --no-absolute-filenames "$@"\n' >"$work/cpio/cpio"
  chmod +x "$work/cpio/cpio"
  (cd "$work/rpmlint" && PATH=$work/cpio:$PATH rpmlint -c "$rpmlint_conf" "$rpm") >"$work/rpmlint.out" 2>&1 || true
  grep -E ': [EW]: ' "$work/rpmlint.out" | sed 's/^/    /' || true
  grep -q 'packages and 0 specfiles checked; 0 errors' "$work/rpmlint.out" ||
    die "rpmlint reports errors on $(basename "$rpm"): $(tail -3 "$work/rpmlint.out")"
}
run rpmlint lint_rpm

# --- the .rpm's metadata -------------------------------------------------------
rpm_metadata() {
  local q=(rpm -qp --nosignature --nodigest)
  # Files: exactly these, with mode, owner, group, flags (c config, n
  # noreplace, d doc, l license) and link target.
  "${q[@]}" --qf '[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} ->%{FILELINKTOS}\n]' "$rpm" | sort >"$work/rpm.files"
  sort >"$work/rpm.want" <<EOF
/etc/gallium-net drwxr-xr-x root:root  ->
/etc/gallium-net/cluster.yaml.example -rw-r--r-- root:root cn ->
/etc/gallium-net/config.yaml -rw-r--r-- root:root cn ->
/etc/libvirt/hooks/network.d/gallium-net l--------- root:root  ->../../../../usr/sbin/gallium-net-hook
/etc/libvirt/hooks/qemu.d/gallium-net l--------- root:root  ->../../../../usr/sbin/gallium-net-hook
/usr/bin/gallium-net -rwxr-xr-x root:root  ->
/usr/lib/systemd/system/gallium-net-host.service -rw-r--r-- root:root  ->
/usr/lib/systemd/system/gallium-net-ledger.service -rw-r--r-- root:root  ->
/usr/lib/systemd/system/gallium-net-agent.service -rw-r--r-- root:root  ->
/usr/lib/systemd/system/gallium-net-store.service -rw-r--r-- root:root  ->
/usr/lib/systemd/system/gallium-net-watch.service -rw-r--r-- root:root  ->
/usr/lib/systemd/system/keepalived.service.d/gallium-net.conf -rw-r--r-- root:root  ->
/usr/lib/systemd/network/50-gallium-net.link -rw-r--r-- root:root  ->
/usr/sbin/gallium-net-hook -rwxr-xr-x root:root  ->
/usr/share/bash-completion/completions/gallium-net -rw-r--r-- root:root  ->
/usr/share/doc/gallium-net/README.md -rw-r--r-- root:root d ->
/usr/share/doc/gallium-net/examples/cluster.yaml -rw-r--r-- root:root d ->
/usr/share/doc/gallium-net/examples/evaluation.yaml -rw-r--r-- root:root d ->
/usr/share/licenses/gallium-net/copyright -rw-r--r-- root:root l ->
/usr/share/man/man1/gallium-net.1.gz -rw-r--r-- root:root d ->
/usr/share/man/man8/gallium-net-hook.8.gz -rw-r--r-- root:root d ->
/usr/share/zsh/site-functions/_gallium-net -rw-r--r-- root:root  ->
/var/lib/gallium-net drwx------ root:root  ->
EOF
  diff -u "$work/rpm.want" "$work/rpm.files" >&2 || die "rpm file list differs from the expectation (- want, + got)"
  # The relative links must resolve to the hook once installed.
  local target
  target=$(cd /etc/libvirt/hooks/qemu.d && realpath -m ../../../../usr/sbin/gallium-net-hook)
  [[ $target == "$hookbin" ]] || die "rpm hook link resolves to $target, want $hookbin"

  "${q[@]}" --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n' "$rpm" >"$work/rpm.nvra"
  read -r n v r a <"$work/rpm.nvra"
  [[ $n == "$pkg" && $v == "$version" && $r == 1 ]] || die "rpm is $n-$v-$r, want $pkg-$version-1"
  [[ $a == x86_64 || $(go env GOARCH) != amd64 ]] || die "rpm arch $a, want x86_64"

  "${q[@]}" --requires "$rpm" >"$work/rpm.requires"
  grep -qx 'libvirt-daemon-driver-qemu >= 6.5' "$work/rpm.requires" || die "rpm does not require libvirt-daemon-driver-qemu >= 6.5: $(cat "$work/rpm.requires")"
  grep -qx '/bin/sh' "$work/rpm.requires" || die "rpm scriptlets need /bin/sh but the package does not require it"
  "${q[@]}" --recommends "$rpm" | grep -qx keepalived || die "rpm does not recommend keepalived"
  "${q[@]}" --provides "$rpm" | grep -qx "$pkg = $version-1" || die "rpm does not provide '$pkg = $version-1': $("${q[@]}" --provides "$rpm")"
  # Libraries the binaries load must be required as rpm's elfdeps would.
  local lib
  for lib in $(readelf -d "$bindir/gallium-net" "$bindir/gallium-net-hook" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u); do
    grep -q "^$lib()" "$work/rpm.requires" || die "$bindir links $lib but the rpm does not require $lib()(64bit)"
  done

  # Scriptlets: present, valid sh, and handling RPM's $1 as documented.
  local s body
  for s in PREIN POSTIN PREUN POSTUN; do
    body=$("${q[@]}" --qf "%{$s}" "$rpm")
    [[ -n $body && $body != "(none)" ]] || die "rpm has no %$s scriptlet"
    sh -n <(printf '%s\n' "$body") || die "rpm %$s scriptlet is not valid sh"
    [[ $("${q[@]}" --qf "%{${s}PROG}" "$rpm") == /bin/sh ]] || die "rpm %$s scriptlet does not run with /bin/sh"
  done
  "${q[@]}" --qf '%{POSTIN}' "$rpm" | grep -q '"$1" -eq 1' || die "%post does not limit the preset to the first install (\$1 -eq 1)"
  "${q[@]}" --qf '%{POSTIN}' "$rpm" | grep -q '^reload_libvirt_hooks$' || die "%post does not make libvirt re-read its hooks"
  "${q[@]}" --qf '%{POSTIN}' "$rpm" | grep -q '^warn_if_hook_blocked$' || die "%post does not warn when libvirt may not execute the hook"
  "${q[@]}" --qf '%{PREIN}' "$rpm" | grep -q '"$1" -ge 2' || die "%pre acts on first installs too (missing \$1 -ge 2 guard)"
  "${q[@]}" --qf '%{PREUN}' "$rpm" | grep -q '"$1" -eq 0' || die "%preun acts on upgrades too (missing \$1 -eq 0 guard)"
  "${q[@]}" --qf '%{POSTUN}' "$rpm" | grep -q '"$1" -eq 0' || die "%postun does not tell erase from upgrade"
  # Only the failover announcer may be (re)started; host networking never.
  ! "${q[@]}" --scripts "$rpm" | grep -E 'try-restart|systemctl (re)?start' | grep -Eqv 'gallium-net-(watch|ledger)\.service' || die "rpm scriptlets (re)start a unit other than gallium-net-watch.service and gallium-net-ledger.service; upgrades must not touch host networking"
  "${q[@]}" --qf '%{POSTUN}' "$rpm" | grep -q 'try-restart gallium-net-watch.service' || die "%postun does not restart the failover announcer after an upgrade"
  "${q[@]}" --qf '%{POSTUN}' "$rpm" | grep -q 'try-restart gallium-net-ledger.service' || die "%postun does not restart the MAC ledger follower after an upgrade"
  note "$(wc -l <"$work/rpm.files") files, $(wc -l <"$work/rpm.requires") requires"
}
run rpm-metadata rpm_metadata

# rpm itself installs, upgrades and erases the package in a scratch root
# (--root; scriptlets off: the scratch root has no shell, and this is not an
# RPM system). Checks the payload lands with its modes and working links, and
# that %config(noreplace) keeps an edited config.yaml.
rpm_install_root() {
  local root=$work/rpmroot r=(rpm --nodeps --noscripts --nosignature --nodigest)
  mkdir -p "$root"
  "${r[@]}" -i --root "$root" "$rpm" 2>"$work/rpm-i.out" || die "rpm -i failed: $(cat "$work/rpm-i.out")"
  [[ $(stat -c %a "$root/usr/bin/gallium-net") == 755 ]] || die "rpm installed gallium-net with mode $(stat -c %a "$root/usr/bin/gallium-net")"
  [[ $(stat -c %a "$root/var/lib/gallium-net") == 700 ]] || die "rpm installed /var/lib/gallium-net with mode $(stat -c %a "$root/var/lib/gallium-net")"
  local l
  for l in etc/libvirt/hooks/qemu.d/gallium-net etc/libvirt/hooks/network.d/gallium-net; do
    [[ $(realpath "$root/$l") == "$root$hookbin" && -x $root$hookbin ]] || die "rpm-installed $l resolves to $(realpath -m "$root/$l"), want $root$hookbin"
  done
  echo "# edited by packaging/test.sh" >>"$root/etc/gallium-net/config.yaml"
  local sha
  sha=$(sha256sum <"$root/etc/gallium-net/config.yaml")
  "${r[@]}" -U --root "$root" "$rpm3" 2>"$work/rpm-U.out" || die "rpm -U to $conflict_version failed: $(cat "$work/rpm-U.out")"
  [[ $(sha256sum <"$root/etc/gallium-net/config.yaml") == "$sha" ]] || die "rpm -U overwrote the edited config.yaml"
  grep -q 'a default added by a newer release' "$root/etc/gallium-net/config.yaml.rpmnew" || die "rpm -U did not put the new default in config.yaml.rpmnew"
  "${r[@]}" -e --root "$root" "$pkg" 2>"$work/rpm-e.out" || die "rpm -e failed: $(cat "$work/rpm-e.out")"
  for l in etc/libvirt/hooks/qemu.d/gallium-net etc/libvirt/hooks/network.d/gallium-net usr/bin/gallium-net "${hookbin#/}"; do
    [[ ! -e $root/$l && ! -L $root/$l ]] || die "rpm -e left $l"
  done
  [[ -f $root/etc/gallium-net/config.yaml.rpmsave ]] || die "rpm -e did not keep the edited config as config.yaml.rpmsave"
  note "rpm -i, -U (edited config kept, new default as .rpmnew), -e (edit kept as .rpmsave) in a scratch root"
}
run rpm-install-root rpm_install_root

# --- install next to a running libvirtd ------------------------------------------
prepare_host() {
  bash test/setup/libvirtd.sh
  # A leftover of an interrupted run.
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
    note "purging a $pkg package left installed"
    dpkg --purge "$pkg" >/dev/null
  fi
  ip link add "$br" type bridge
  ip link set "$br" up
  cat >"$work/net.xml" <<EOF
<network><name>$net</name><forward mode='bridge'/><bridge name='$br'/></network>
EOF
  cat >"$work/dom.xml" <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'><source network='$net'/><model type='e1000'/></interface>
  </devices>
</domain>
EOF
  virsh -q net-define "$work/net.xml" >/dev/null
  virsh -q define "$work/dom.xml" >/dev/null
}

# start_and_stop_domain LOGFILE: starts the network and the domain with
# libvirtd's command log on, stops both, and leaves what libvirtd ran there.
start_and_stop_domain() {
  : >"$debuglog"
  debug_on
  virsh -q net-start "$net" >/dev/null
  virsh -q start "$dom" >/dev/null
  virsh -q destroy "$dom" >/dev/null
  virsh -q net-destroy "$net" >/dev/null
  debug_off
  cp "$debuglog" "$1"
}

hook_runs() { grep -c "About to run .*$1 " "$2" || true; }

# Hook links someone placed by hand (another tier, an operator) would make
# the control below meaningless and would be replaced by the package: they
# are moved aside here, at top level so cleanup can put them back.
save_foreign_links() {
  local l
  for l in "${links[@]}"; do
    if [[ -e $l || -L $l ]]; then
      if dpkg -S "$l" >/dev/null 2>&1; then
        echo "packaging/test.sh: $l belongs to an installed package: $(dpkg -S "$l")" >&2
        exit 1
      fi
      foreign[$l]=$(readlink "$l")
      echo "    moving aside $l -> ${foreign[$l]} (restored on exit)"
      rm -f "$l"
    fi
  done
}

before_install() {
  bash test/setup/libvirtd.sh reload
  sleep 0.5
  # Control: without the package, libvirtd runs no gallium-net hook.
  start_and_stop_domain "$work/before.log"
  [[ $(hook_runs qemu.d/gallium-net "$work/before.log") == 0 ]] || die "a qemu.d/gallium-net hook ran before the package was installed"
}

install_deb() {
  pid_before=$(libvirtd_pid)
  dpkg -i "$deb" >"$work/dpkg-i.out" 2>&1 || die "dpkg -i failed: $(cat "$work/dpkg-i.out")"
  dpkg-query -W -f='${Status} ${Version}\n' "$pkg" | grep -qx "install ok installed $version-1" ||
    die "dpkg says: $(dpkg-query -W -f='${Status} ${Version}' "$pkg")"
  local l
  for l in "${links[@]}"; do
    [[ -L $l ]] || die "$l is not a symlink after install"
    [[ $(readlink -f "$l") == "$hookbin" && -x $hookbin ]] || die "$l points to $(readlink "$l"), want executable $hookbin"
    dpkg -S "$l" | grep -q "^$pkg:" || die "$l is not owned by $pkg"
  done
  [[ ! -e /etc/libvirt/hooks/qemu || $(dpkg -S /etc/libvirt/hooks/qemu 2>/dev/null) != "$pkg"* ]] || die "the package owns /etc/libvirt/hooks/qemu"
  [[ $(stat -c %a /var/lib/gallium-net) == 700 ]] || die "/var/lib/gallium-net has mode $(stat -c %a /var/lib/gallium-net), want 700"
  dpkg-query -W -f='${Conffiles}\n' "$pkg" >"$work/conffiles"
  grep -q '^ /etc/gallium-net/config.yaml ' "$work/conffiles" || die "config.yaml is not a conffile: $(cat "$work/conffiles")"
  grep -q '^ /etc/gallium-net/cluster.yaml.example ' "$work/conffiles" || die "cluster.yaml.example is not a conffile"
  man -w gallium-net >/dev/null 2>&1 || [[ -f /usr/share/man/man1/gallium-net.1.gz ]] || die "no gallium-net(1) man page"
  zcat /usr/share/man/man1/gallium-net.1.gz | grep -q '^\.TH ' || die "man page has no .TH header"
  grep -q 'complete .*gallium-net' /usr/share/bash-completion/completions/gallium-net || die "bash completion does not complete gallium-net"
  grep -q '^#compdef gallium-net' /usr/share/zsh/vendor-completions/_gallium-net || die "zsh completion missing"
  # The units: enabled for boot by deb-systemd-helper (the host unit is
  # never started by the package; the announcer is, under systemd).
  local unit
  for unit in gallium-net-host.service gallium-net-watch.service gallium-net-ledger.service gallium-net-store.service gallium-net-agent.service; do
    [[ -L /etc/systemd/system/multi-user.target.wants/$unit ]] || die "$unit is not enabled (no multi-user.target.wants link)"
    if command -v systemd-analyze >/dev/null; then
      # Works without systemd as PID 1. Units it cannot find (libvirt's modular
      # daemons, the OS's network managers not installed here) are fine:
      # Before= only orders.
      systemd-analyze verify "/lib/systemd/system/$unit" >"$work/verify.out" 2>&1 || true
      if grep -vE "(virtqemud|virtnetworkd|libvirtd|keepalived|networking|NetworkManager|systemd-networkd)\.service.*(not found|No such file)" "$work/verify.out" | grep -q .; then
        die "systemd-analyze verify $unit: $(cat "$work/verify.out")"
      fi
    fi
  done
  ! grep -E 'deb-systemd-invoke (re)?start|systemctl (re)?start' /var/lib/dpkg/info/"$pkg".postinst | grep -q 'gallium-net-host' || die "postinst starts gallium-net-host.service; a package transaction must not apply host networking"
  /usr/bin/gallium-net --version >/dev/null || die "installed gallium-net does not run"
  # Active without a restart: postinst made libvirtd re-read its hooks.
  [[ $(libvirtd_pid) == "$pid_before" ]] || die "libvirtd was restarted (pid $pid_before -> $(libvirtd_pid)); a reload was expected"
  sleep 0.5
  start_and_stop_domain "$work/installed.log"
  local q n
  q=$(hook_runs qemu.d/gallium-net "$work/installed.log")
  n=$(hook_runs network.d/gallium-net "$work/installed.log")
  ((q >= 4)) || die "libvirtd ran the qemu.d hook $q times during a domain start/stop, want >= 4 (prepare, start, started, stopped, release); log: installed.log"
  ((n >= 2)) || die "libvirtd ran the network.d hook $n times during a network start/stop and a port, want >= 2"
  note "libvirtd pid $pid_before kept; hook ran $q times (qemu.d) and $n times (network.d) for one domain and one network"
}

run install-prepare prepare_host
log_outputs=$(virt-admin daemon-log-outputs | sed -n 's/^ *Logging outputs: *//p')
[[ -n $log_outputs ]] || { echo "packaging/test.sh: cannot read libvirtd's log outputs with virt-admin" >&2; exit 1; }
save_foreign_links
run hook-inactive-before-install before_install
run dpkg-install-hook-active install_deb

# --- the installed CLI -----------------------------------------------------------
cli_defines_network() {
  /usr/bin/gallium-net validate -f /etc/gallium-net/cluster.yaml.example >"$work/validate.out" 2>&1 ||
    die "installed gallium-net does not validate the shipped example spec: $(cat "$work/validate.out")"
  note "installed gallium-net validates /etc/gallium-net/cluster.yaml.example"
  # A one-hypervisor evaluation spec for this host. Its network lives on the
  # adapter group gtpkg, whose bridge (gallium-net's naming: gbr-GROUP) is
  # made here; `network define` defines, starts and autostarts it. It does
  # not touch host networking (that is `host apply`).
  local host
  host=$(hostname -s)
  ip link add "$cli_br" type bridge
  ip link set "$cli_br" up
  cat >/etc/gallium-net/cluster.yaml <<EOF
cluster:
  name: gtpkg
  subnet: 192.0.2.0/24
  vip: 192.0.2.100
  evaluation: true
hypervisors:
  - name: $host
    managementIP: 192.0.2.101/24
    adapters:
      - {name: eth0, speedMbps: 10000}
adapterGroups:
  - name: gtpkg
    infrastructure: true
    adapters: {$host: [eth0]}
networks:
  - {name: $cli_net, adapterGroup: gtpkg}
hardwareProfiles:
  - {name: modern, nicModel: virtio}
EOF
  /usr/bin/gallium-net network define "$cli_net" -f /etc/gallium-net/cluster.yaml --hypervisor "$host" >"$work/define.out" 2>&1 ||
    die "gallium-net network define $cli_net failed: $(cat "$work/define.out")"
  virsh -q net-list --all --name | grep -qx "$cli_net" ||
    die "after gallium-net network define, libvirt has no network $cli_net: $(virsh net-list --all --name | tr '\n' ' ')"
  virsh net-dumpxml "$cli_net" | grep -q "<forward mode='bridge'" || die "network $cli_net is not a bridge-forward network: $(virsh net-dumpxml "$cli_net")"
  virsh net-dumpxml "$cli_net" | grep -q "<bridge name='$cli_br'" || die "network $cli_net is not on bridge $cli_br"
  [[ -f /var/lib/gallium-net/host-snapshot.json ]] || die "network define wrote no host snapshot for the hook"
  note "installed CLI defined libvirt network $cli_net on $cli_br: $(tr -s ' \n' ' ' <"$work/define.out")"
}

run cli-defines-network cli_defines_network

# --- upgrade -----------------------------------------------------------------------
upgrade_keeps_config() {
  echo "# edited by packaging/test.sh" >>/etc/gallium-net/config.yaml
  sha=$(sha256sum </etc/gallium-net/config.yaml)
  pid_before=$(libvirtd_pid)
  dpkg -i "$deb2" >"$work/dpkg-up.out" 2>&1 </dev/null || die "upgrade to $upgrade_version failed: $(cat "$work/dpkg-up.out")"
  dpkg-query -W -f='${Version}' "$pkg" | grep -qx "$upgrade_version-1" || die "after upgrade dpkg has $(dpkg-query -W -f='${Version}' "$pkg")"
  [[ $(sha256sum </etc/gallium-net/config.yaml) == "$sha" ]] || die "upgrade changed the edited /etc/gallium-net/config.yaml"
  # The new default changed too: with --force-confold (what unattended apt
  # runs use) the edit stays and the new default lands next to it.
  dpkg -i --force-confold "$deb3" >"$work/dpkg-up3.out" 2>&1 </dev/null || die "upgrade to $conflict_version failed: $(cat "$work/dpkg-up3.out")"
  [[ $(sha256sum </etc/gallium-net/config.yaml) == "$sha" ]] || die "upgrade with a new default config overwrote the edited config.yaml"
  grep -q 'a default added by a newer release' /etc/gallium-net/config.yaml.dpkg-dist ||
    die "the newer default config was not kept as config.yaml.dpkg-dist"
  [[ $(libvirtd_pid) == "$pid_before" ]] || die "the upgrade restarted libvirtd"
  local l
  for l in "${links[@]}"; do [[ $(readlink -f "$l") == "$hookbin" ]] || die "$l lost after upgrade"; done
  note "$version -> $upgrade_version -> $conflict_version kept the edited config.yaml; new default in config.yaml.dpkg-dist"
}
run upgrade-keeps-config upgrade_keeps_config

# --- removal and purge ------------------------------------------------------------
remove_leaves_nothing_running() {
  pid_before=$(libvirtd_pid)
  dpkg -r "$pkg" >"$work/dpkg-r.out" 2>&1 || die "dpkg -r failed: $(cat "$work/dpkg-r.out")"
  local l foreign_now=0
  for l in "${links[@]}"; do
    if [[ -L $l && $(readlink "$l") != "$hookbin" ]] && ! dpkg -S "$l" >/dev/null 2>&1; then
      # Another tier running at the same time (e2e's `gallium-net hook
      # install`) placed its own link meanwhile; it is not the package's.
      note "$l -> $(readlink "$l") appeared during the test; not the package's"
      foreign_now=1
      continue
    fi
    [[ ! -e $l && ! -L $l ]] || die "$l still there after removal"
  done
  [[ ! -e /usr/bin/gallium-net && ! -e $hookbin ]] || die "binaries still there after removal"
  [[ ! -e /lib/systemd/system/gallium-net-host.service && ! -e /lib/systemd/system/gallium-net-watch.service && ! -e /lib/systemd/system/gallium-net-ledger.service && ! -e /lib/systemd/system/gallium-net-store.service && ! -e /lib/systemd/system/gallium-net-agent.service ]] || die "unit file still there after removal"
  [[ ! -e /lib/systemd/system/keepalived.service.d/gallium-net.conf ]] || die "keepalived drop-in still there after removal"
  [[ ! -e /lib/systemd/network/50-gallium-net.link ]] || die "udev .link file still there after removal"
  # A removed-not-purged package leaves its enable link masked (as debhelper).
  local unit
  for unit in gallium-net-host.service gallium-net-watch.service gallium-net-ledger.service gallium-net-store.service gallium-net-agent.service; do
    if [[ -L /etc/systemd/system/multi-user.target.wants/$unit ]]; then
      [[ $(readlink "/etc/systemd/system/$unit") == /dev/null ]] || die "enable link of $unit left and the unit is not masked"
    fi
  done
  ! pgrep -f '^(/usr/bin/gallium-net|/usr/sbin/gallium-net-hook)' >/dev/null || die "gallium-net processes still running: $(pgrep -af '^(/usr/bin/gallium-net|/usr/sbin/gallium-net-hook)')"
  [[ -f /etc/gallium-net/config.yaml ]] || die "dpkg -r removed the config (only purge may)"
  [[ $(libvirtd_pid) == "$pid_before" ]] || die "removal restarted libvirtd"
  # libvirtd forgot the hook: a domain start no longer runs it, and works.
  sleep 0.5
  start_and_stop_domain "$work/removed.log"
  if ((foreign_now)); then
    note "not checking that no hook runs after removal: another link is in place"
  else
    [[ $(hook_runs gallium-net "$work/removed.log") == 0 ]] || die "libvirtd still runs a gallium-net hook after removal"
  fi
}
run dpkg-remove remove_leaves_nothing_running

purge_removes_config() {
  dpkg --purge "$pkg" >"$work/dpkg-p.out" 2>&1 || die "dpkg --purge failed: $(cat "$work/dpkg-p.out")"
  [[ ! -e /etc/gallium-net ]] || die "/etc/gallium-net still there after purge: $(ls -A /etc/gallium-net)"
  [[ ! -e /var/lib/gallium-net ]] || die "/var/lib/gallium-net still there after purge"
  local f
  for f in /etc/systemd/system/gallium-net-{host,watch,ledger,store,agent}.service /etc/systemd/system/multi-user.target.wants/gallium-net-{host,watch,ledger,store,agent}.service; do
    [[ ! -e $f && ! -L $f ]] || die "$f still there after purge"
  done
  ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed' || die "dpkg still knows $pkg: $(dpkg-query -W -f='${Status}' "$pkg")"
}
run dpkg-purge purge_removes_config

echo "pkg tier: all checks passed"
