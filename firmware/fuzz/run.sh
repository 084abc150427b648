#!/usr/bin/env bash
# Build and run the fuzz targets (README.md here).
#
#   firmware/fuzz/run.sh TARGET SECONDS [WIDTHS]
#
# TARGET: frame, request, blob or all. SECONDS: fuzzing time per target, split evenly between the
# widths. WIDTHS: "64 32" (default), "64" or "32". Each run starts from the committed seeds
# (corpus/<target>/) plus what earlier runs here found (build/fuzz/corpus/<width>/<target>/); a crash,
# sanitizer report, leak, timeout or out-of-memory is written to build/fuzz/findings/<width>-<target>/
# and makes the script exit 1. One summary line per run: executions, exec/s, coverage, corpus.
# Extra libFuzzer flags: FUZZ_FLAGS (e.g. FUZZ_FLAGS=-jobs=1). Runs under `nice -n 10`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${1:?usage: run.sh frame|request|blob|all SECONDS [WIDTHS]}"
seconds="${2:?usage: run.sh TARGET SECONDS [WIDTHS]}"
widths="${3:-64 32}"
out="$repo/build/fuzz"
case "$target" in
  all) targets="frame request blob" ;;
  frame|request|blob) targets="$target" ;;
  *) echo "run.sh: unknown target $target (frame, request, blob, all)" >&2; exit 2 ;;
esac
nw=$(echo $widths | wc -w)
per=$(( seconds / nw ))
[ "$per" -ge 1 ] || per=1

for w in $widths; do
  nice -n 10 make -s -C "$here" "m$w" OUT="$out"
done

status=0
for t in $targets; do
  for w in $widths; do
    corpus="$out/corpus/$w/$t"
    findings="$out/findings/$w-$t"
    log="$out/logs/$w-$t.log"
    mkdir -p "$corpus" "$findings" "$(dirname "$log")"
    rm -f "$findings"/*
    # frame: inputs past a few hundred bytes (two 254-byte COBS blocks, ten times the receive buffer)
    # reach nothing new and only slow each execution down
    opts=""
    [ "$t" = frame ] && opts="-max_len=600"
    rc=0
    (cd "$out" && nice -n 10 "$out/$w/fuzz_$t" -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$findings/" $opts ${FUZZ_FLAGS:-} "$corpus" "$here/corpus/$t") \
        > "$log" 2>&1 || rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[bKM]?b?' || true)
    found=$(ls -A "$findings" | wc -l)
    printf 'fuzz %-7s %sbit: %ss, %s executions, %s exec/s, %s, findings %s, exit %s\n' \
      "$t" "$w" "$per" "${execs:-?}" "${rate:-?}" "${cov:-no DONE line}" "$found" "$rc"
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
      status=1
      echo "---- $log (last 40 lines) ----"
      tail -40 "$log"
      ls -l "$findings"
    fi
  done
done
exit $status
