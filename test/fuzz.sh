#!/usr/bin/env bash
# make fuzz: runs every fuzz target of the project for a while each and
# prints one summary line per target (executions, new corpus entries,
# result).
#
#   test/fuzz.sh                       every target, each for its time
#   FUZZTIME=30s test/fuzz.sh          every target for 30s (overrides all)
#   FUZZ_TARGETS="FuzzParse" test/fuzz.sh   only the targets named
#
# Adding a target: one line "PACKAGE FUZZNAME [TIME]" in the list below
# (TIME defaults to 2m). Plain `go test` (make test) replays each target's
# committed corpus in PACKAGE/testdata/fuzz/FUZZNAME; a crash found here is
# written there by go test: fix the bug, then commit that file as a seed.
set -uo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

targets=(
  "./plugin/model FuzzParse 2m"
  "./plugin/model FuzzMACPrefix 30s"
  "./hooks FuzzHookInput 2m"
  "./domains FuzzParseDomain 2m"
)

only=" ${FUZZ_TARGETS:-} "
logdir=$(mktemp -d /tmp/gallium-fuzz.XXXXXX)
results=() failed=0
for t in "${targets[@]}"; do
  read -r pkg name time <<<"$t"
  [[ -z ${FUZZ_TARGETS:-} || $only == *" $name "* ]] || continue
  time=${FUZZTIME:-${time:-2m}}
  log=$logdir/$name.log
  echo "=== fuzz $pkg $name for $time (log $log)" >&2
  start=$(date +%s)
  # -run '^$': no unit tests; the corpus replay is part of the fuzz run.
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" "$pkg" >"$log" 2>&1
  rc=$?
  # Last progress line: "fuzz: elapsed: 2m0s, execs: 123456 (1028/sec), new interesting: 12 (total: 45)"
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  newi=$(grep -oE 'new interesting: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  if ((rc == 0)); then
    res=ok
  else
    res=FAIL failed=$((failed + 1))
    tail -30 "$log" >&2
    crasher=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | tail -1)
    [[ -n $crasher ]] && echo "crasher: $pkg/$crasher (rerun: go test -run '$name/${crasher##*/}' $pkg)" >&2
  fi
  results+=("$(printf '%-4s %-28s %-10s %6ds  %s execs, %s new interesting' "$res" "$name" "$pkg" $(( $(date +%s) - start )) "${execs:-0}" "${newi:-0}")")
done
echo
printf '%s\n' "${results[@]}"
((failed == 0))
