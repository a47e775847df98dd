#!/usr/bin/env bash
# Runs one fuzz target for a bounded time, one job, one worker (the machine is shared).
#   fuzz/run.sh TARGET [SECONDS] [LIBFUZZER FLAGS...]     e.g. fuzz/run.sh sip_parse 600
#   (to go on past a known, reported crash: fuzz/run.sh tcp_framer 600 -fork=1 -ignore_crashes=1)
# New corpus entries go to fuzz/corpus/TARGET (git-ignored); fuzz/seeds/TARGET is read only.
# libFuzzer's output is kept in fuzz/target/logs/TARGET.log; its last `#N DONE` line is
# printed at the end. Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
target=${1:?target}
seconds=${2:-120}
shift $(( $# < 2 ? $# : 2 ))
fuzz=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$fuzz/corpus/$target" "$fuzz/seeds/$target" "$fuzz/target/logs/$target"
cd "$fuzz/target/logs/$target"   # -jobs writes fuzz-0.log into the working directory
status=0
cargo +nightly fuzz run --fuzz-dir "$fuzz" "$target" \
    "$fuzz/corpus/$target" "$fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -jobs=1 -workers=1 -max_len=16384 "$@" \
    >"$fuzz/target/logs/$target.log" 2>&1 || status=$?
grep -a -E '^#[0-9]+[[:space:]]+DONE' "$fuzz/target/logs/$target.log" | tail -1 || true
grep -a -E 'panicked at|SUMMARY|Test unit written' "$fuzz/target/logs/$target.log" || true
exit "$status"
