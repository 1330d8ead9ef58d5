#!/usr/bin/env bash
# make bench: runs the project's benchmarks and checks each against its
# time budget.
#
#   test/bench.sh                        every benchmark
#   BENCHCOUNT=10 BENCHTIME=2s test/bench.sh
#   BENCH_TARGETS="BenchmarkLoadValidate1000Networks" test/bench.sh
#
# Adding a benchmark: one line "PACKAGE BENCHNAME [MAX [OPTION...]]" in the
# list below; MAX is a time per operation (500us, 20ms, 1s) or "-" for no
# budget. Each benchmark runs BENCHCOUNT times (default 5); the budget is
# checked against the fastest run, because load from other processes only
# ever adds time. OPTIONs:
#   benchtime=N      this benchmark's -benchtime (300x, 2s), over BENCHTIME
#   METRIC<=LIMIT    a metric the benchmark reports (b.ReportMetric), its
#                    median over the runs held to LIMIT: ratios measured
#                    within one run, which load weighs on alike
# A benchmark's own metrics are printed with their medians.
set -uo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false

targets=(
  "./plugin/model BenchmarkLoadValidate1000Networks 20ms"
  "./plugin/model BenchmarkValidate1000Networks -"
  "./plugin/model BenchmarkValidate4000Networks 1.5ms"
  "./plugin/store BenchmarkReadSnapshot 20ms"
  "./plugin/store/boltstore BenchmarkAllocateMAC 50ms"
  "./plugin/store/boltstore BenchmarkAllocateMACExisting 1ms"
  "./plugin/store/etcdstore BenchmarkAllocateMAC1Member 50ms"
  "./plugin/store/etcdstore BenchmarkAllocateMAC3Members3Clients 100ms"
  "./hooks BenchmarkHookExecUnmanaged 5ms"
  "./hooks BenchmarkHookExecManaged4NICs 10ms"
  # The hook with 0, 100 and 1000 domains recorded and the empty static Go
  # binary, interleaved (issue 18): 1000 domains cost at most 1.3x none.
  "./hooks BenchmarkHookRecordsPortCreated - benchtime=60x x1000/x0<=1.3"
  "./hooks BenchmarkHookRecordsStart - benchtime=60x x1000/x0<=1.3"
  "./hooks BenchmarkHookRecordsStopped - benchtime=60x x1000/x0<=1.3"
  # 50 domains' start hooks at once against one at a time (and against 50
  # empty binaries at once, the floor of 50 processes on this machine).
  "./hooks BenchmarkHookStart50Concurrent - benchtime=3x conc/seq<=1"
)

count=${BENCHCOUNT:-5}
benchtime=${BENCHTIME:-1s}
only=" ${BENCH_TARGETS:-} "
logdir=$(mktemp -d /tmp/gallium-bench.XXXXXX)

# ns converts 20ms, 500us, 1.5s, 300ns to nanoseconds.
ns() {
  awk -v d="$1" 'BEGIN {
    n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
    m = (u == "ns") ? 1 : (u == "us" || u == "µs") ? 1e3 : (u == "ms") ? 1e6 : (u == "s") ? 1e9 : -1
    if (m < 0) { print -1; exit } ; printf "%.0f\n", n * m }'
}

results=() failed=0
for t in "${targets[@]}"; do
  read -r pkg name max opts <<<"$t"
  [[ -z ${BENCH_TARGETS:-} || $only == *" $name "* ]] || continue
  bt=$benchtime checks=()
  for o in $opts; do
    case $o in
      benchtime=*) bt=${o#benchtime=} ;;
      *"<="*) checks+=("$o") ;;
      *) echo "bench.sh: bad option $o for $name" >&2; exit 2 ;;
    esac
  done
  log=$logdir/$name.log
  echo "=== bench $pkg $name x$count -benchtime $bt (log $log)" >&2
  if ! go test -run '^$' -bench "^${name}\$" -benchmem -count "$count" -benchtime "$bt" "$pkg" >"$log" 2>&1; then
    tail -20 "$log" >&2
    results+=("$(printf 'FAIL %-36s did not run (log %s)' "$name" "$log")")
    failed=$((failed + 1))
    continue
  fi
  grep -E "^${name}(-[0-9]+)?\s" "$log" >&2
  lines=$(grep -E "^${name}(-[0-9]+)?\s" "$log")
  # Fields are "VALUE UNIT" pairs after the name and iteration count.
  field() { awk -v unit="$1" '{ for (i = 2; i <= NF; i++) if ($i == unit) print $(i-1) }' <<<"$lines"; }
  mapfile -t nsop < <(field ns/op | sort -g)
  n=${#nsop[@]}
  if ((n == 0)); then
    # go test exits 0 when the benchmark skipped (no root) or no longer
    # exists: that is no figure, not a pass.
    grep -E -- '--- SKIP|SKIP|no tests to run' "$log" >&2
    results+=("$(printf 'FAIL %-36s produced no result: skipped or missing (log %s)' "$name" "$log")")
    failed=$((failed + 1))
    continue
  fi
  best=$(printf '%.0f' "${nsop[0]}") median=$(printf '%.0f' "${nsop[$(( (n - 1) / 2 ))]}")
  bop=$(field B/op | tail -1) allocs=$(field allocs/op | tail -1)
  res=ok budget=""
  if [[ $max != - && -n $max ]]; then
    limit=$(ns "$max")
    budget=" (budget $max)"
    if ((limit < 0)); then
      res=FAIL budget=" (bad budget $max)"
    elif ((best > limit)); then
      res=FAIL
    fi
  fi
  # The benchmark's own metrics: the median of each over the runs.
  metrics=""
  for unit in $(awk '{ for (i = 4; i <= NF; i += 2) print $i }' <<<"$lines" | grep -vxE 'ns/op|B/op|allocs/op' | sort -u); do
    mapfile -t vals < <(field "$unit" | sort -g)
    med=${vals[$(( (${#vals[@]} - 1) / 2 ))]}
    metrics+=" $unit=$med"
    for c in "${checks[@]}"; do
      [[ ${c%%<=*} == "$unit" ]] || continue
      if awk -v v="$med" -v l="${c#*<=}" 'BEGIN { exit !(v > l) }'; then
        res=FAIL metrics+="(FAIL: over ${c#*<=})"
      fi
    done
  done
  for c in "${checks[@]}"; do
    [[ " $metrics" == *" ${c%%<=*}="* ]] || { res=FAIL metrics+=" ${c%%<=*}=missing(FAIL)"; }
  done
  [[ $res == ok ]] || failed=$((failed + 1))
  results+=("$(printf '%-4s %-36s best %.2f ms/op, median %.2f ms/op%s, %s B/op, %s allocs/op' "$res" "$name" \
    "$(awk -v x="$best" 'BEGIN{print x/1e6}')" "$(awk -v x="$median" 'BEGIN{print x/1e6}')" "$budget" "$bop" "$allocs")")
  [[ -z $metrics ]] || results+=("     medians:$metrics")
done
echo
printf '%s\n' "${results[@]}"
((failed == 0))
