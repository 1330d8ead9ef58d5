#!/usr/bin/env bash
# The kernel lab tier (test tier 3, DESIGN.md section 5; test/lab/README.md).
#   test/lab/run.sh                      everything
#   test/lab/run.sh -run 'TestBond'      only matching tests (guest and host)
#   test/lab/run.sh --guest [PKG...]     only the in-guest package tests (packages.txt, or PKG...)
#   test/lab/run.sh --host               only the host-side tests (they boot VMs)
#   test/lab/run.sh --guest -run T -count 40 netsetup   chase a flaky test
# Fetches the Debian kernel (cached), builds the initramfs (cached), runs
# each package of test/lab/packages.txt as a static test binary inside its
# own lab VM (GALLIUM_LAB=1), then the host-side tests of test/lab
# (GALLIUM_LAB_HOST=1). Output is go test's (-v), streamed. Exits non-zero
# if anything failed or the lab could not run: CI fails, it never skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS=-buildvcs=false
export GALLIUM_STRICT=1

run_re="" count=1 guest=1 host=1 pkgs=()
while (($#)); do
  case $1 in
    -run) run_re=$2; shift 2 ;;
    -count) count=$2; shift 2 ;;
    --guest) host=0; shift ;;
    --host) guest=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) pkgs+=("$1"); shift ;;
  esac
done

build=test/lab/cache/build
mkdir -p "$build"
child=""
# Forward INT/TERM to the running step: labctl and the test binary kill
# their VMs on the way out (and QEMU dies with its parent in any case).
trap '[[ -n $child ]] && kill -TERM "$child" 2>/dev/null; wait; exit 130' INT TERM
step() { "$@" & child=$!; wait "$child"; local rc=$?; child=""; return $rc; }

start=$(date +%s)
if ! go build -o "$build/labctl" ./test/lab/cmd/labctl; then
  echo "--- FAIL: kernel lab: cannot build labctl"
  exit 1
fi
echo "=== lab: preparing (kernel and initramfs are cached under test/lab/cache)"
if ! step "$build/labctl" prepare; then
  echo "--- FAIL: kernel lab: cannot fetch the kernel or build the initramfs"
  exit 1
fi

rc=0
if ((guest)); then
  args=()
  [[ -n $run_re ]] && args+=(-run "$run_re")
  args+=(-count "$count")
  step "$build/labctl" test "${args[@]}" "${pkgs[@]}" || rc=1
fi

if ((host)); then
  echo "=== lab: host-side lab tests (github.com/gallium/gallium-net/test/lab)"
  if ! go test -c -o "$build/lab.test" ./test/lab; then
    echo "FAIL	github.com/gallium/gallium-net/test/lab [build failed]"
    rc=1
  else
    args=(-test.v -test.count="$count" -test.timeout 20m)
    [[ -n $run_re ]] && args+=(-test.run "$run_re")
    t0=$(date +%s%N)
    export GALLIUM_LAB_HOST=1
    step "$build/lab.test" "${args[@]}"
    hrc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    secs=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    if ((hrc == 0)); then
      printf 'ok  \tgithub.com/gallium/gallium-net/test/lab\t%ss\n' "$secs"
    else
      printf 'FAIL\tgithub.com/gallium/gallium-net/test/lab\t%ss\n' "$secs"
      rc=1
    fi
  fi
fi

# The VIP under CPU hogs: busy loops on every core, which must not run
# beside other packages' tests (the unit tier runs packages in parallel and
# skips it there), so it runs here, alone, after the lab's VMs are gone.
if ((host)) && [[ -z $run_re ]]; then
  echo "=== lab: the VIP beside CPU hogs (github.com/gallium/gallium-net/test/vip)"
  step env GALLIUM_SERIAL_TESTS=1 go test -count=1 -v -run '^TestVIPUnderCPUHogs$' ./test/vip || rc=1
fi

echo "=== lab: tier finished in $(( $(date +%s) - start ))s"
exit $rc
