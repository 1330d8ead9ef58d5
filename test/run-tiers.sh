#!/usr/bin/env bash
# Runs gallium-net's test tiers (DESIGN.md section 5) and prints one summary.
#   test/run-tiers.sh            every tier
#   test/run-tiers.sh unit lab   only those
# Tiers: unit (go vet and staticcheck, then tier 1, and tier 2 namespace
# tests, which need root: go test ./... as root), lab (tier 3, the kernel lab
# VM), e2e (tier 4, real libvirtd + QEMU), pkg (the .deb/.rpm installed and
# checked), cluster (three lab hypervisors with the .deb, etcd, VIP, VMs and
# faults).
# GALLIUM_STRICT=1: a test that cannot run here fails instead of skipping,
# except kernel-feature tests on the host kernel, which the lab tier runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export GALLIUM_STRICT=1
export GOFLAGS=-buildvcs=false
all=(unit lab e2e pkg cluster)
tiers=("$@")
((${#tiers[@]})) || tiers=("${all[@]}")

declare -A script=(
  [lab]=test/lab/run.sh
  [e2e]=test/e2e/run.sh
  [pkg]=packaging/test.sh
  [cluster]=test/cluster/run.sh
)
passed=0 failed=0 skipped=0
results=()
logdir=$(mktemp -d /tmp/gallium-tiers.XXXXXX)
for tier in "${tiers[@]}"; do
  start=$(date +%s)
  log=$logdir/$tier.log
  echo "=== tier $tier" >&2
  case $tier in
    unit) # go vet and staticcheck (pinned in go.mod as a tool) first: a
          # finding of either fails the tier even when every test passes.
          lintlog=$logdir/unit-lint.log lint=0
          go vet ./... >"$lintlog" 2>&1 || lint=1
          go tool staticcheck ./... >>"$lintlog" 2>&1 || lint=1
          if ((lint)); then echo "go vet / staticcheck reported (log $lintlog):" >&2; cat "$lintlog" >&2; fi
          go test -count=1 -v ./... >"$log" 2>&1; rc=$?
          grep -E '^(ok|FAIL|---|panic:|\s+\S+_test.go:)' "$log" | grep -v -- '--- PASS'
          ((lint == 0)) || rc=1 ;;
    *)
      s=${script[$tier]:-}
      [[ -n $s ]] || { echo "unknown tier $tier" >&2; exit 2; }
      bash "$s" >"$log" 2>&1; rc=$?
      tail -40 "$log" ;;
  esac
  p=$(grep -cE '^\s*--- PASS' "$log"); f=$(grep -cE '^\s*--- FAIL' "$log"); k=$(grep -cE '^\s*--- SKIP' "$log")
  if ((rc != 0 && f == 0)); then f=1; fi
  # A tier that ran no test at all proves nothing.
  if ((p == 0 && f == 0)); then echo "tier $tier ran no test" >&2; f=1; rc=1; fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
  results+=("$(printf '%-5s %-4s %4ds  %d passed, %d failed, %d skipped  (log %s)' "$tier" "$([[ $rc == 0 ]] && echo ok || echo FAIL)" $(( $(date +%s) - start )) "$p" "$f" "$k" "$log")")
  if [[ $tier == unit ]] && ((k > 0)); then
    echo "skipped in tier unit (each says why; the lab tier runs the kernel-feature ones):" >&2
    grep -E -A1 '^\s*--- SKIP' "$log" | grep -E '_test.go' | sed 's/^ */  /' | sort | uniq -c | head -20 >&2
  fi
done
echo
echo "tier  result time  tests"
printf '%s\n' "${results[@]}"
echo
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
