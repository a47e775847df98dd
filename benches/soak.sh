#!/usr/bin/env bash
# Soak benchmark: many calls in a row through the B2BUA (answered, bridged, recorded, every
# message logged), sampling the gateway's memory, open files and threads, to show that nothing
# grows with the number of calls handled. SIPp's built-in uac and uas scenarios are the caller
# and the agency (plan benches/bench-plan.toml: 112 → the agency on 127.0.0.1:5090).
#   benches/soak.sh                      defaults: RATE=100 CALLS=60000 HOLD_MS=1000
# Environment: RATE (calls/s), CALLS (total), HOLD_MS (call length), EVERY (sample period, s),
#              KEEP=1 keeps the work directory (call log and recordings; several GB).
# Loopback only, no root needed. Prints one sample line per period and a summary.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
RATE="${RATE:-100}"
CALLS="${CALLS:-60000}"
HOLD_MS="${HOLD_MS:-1000}"
EVERY="${EVERY:-30}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"

cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
work="$(mktemp -d /tmp/siaga-soak.XXXX)"
cleanup() {
  kill "${uas_pid:-}" "${gw_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$HERE/target/release/siaga" serve --listen udp:127.0.0.1:5070 \
  --db "$work/siaga.db" --recordings "$work/rec" --rtp-ports 30000-39999 \
  --dialplan "$PLAN" > "$work/stdout" 2> "$work/stderr" &
gw_pid=$!
for _ in $(seq 100); do grep -q '^listening udp' "$work/stdout" && break; sleep 0.1; done
grep -q '^listening udp' "$work/stdout" || { cat "$work/stderr"; exit 1; }

(cd "$work" && exec sipp -sn uas -i 127.0.0.1 -p 5090 -mp 26000 -cp 8890 -nostdin \
  -bg > /dev/null 2>&1) || true
uas_pid=$(pgrep -f "sipp -sn uas -i 127.0.0.1 -p 5090" | head -1)

sample() {
  local rss hwm fds threads cpu
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$gw_pid/status")
  threads=$(awk '/^Threads/ {print $2}' "/proc/$gw_pid/status")
  fds=$(ls "/proc/$gw_pid/fd" | wc -l)
  cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$gw_pid/stat")
  local calls
  calls=$(sqlite3 "file:$work/siaga.db?mode=ro" "select count(*) from calls" 2>/dev/null || echo '?')
  printf '%8s s  calls logged %8s  rss %7s kB  peak %7s kB  fds %5s  threads %3s  cpu %8s s\n' \
    "$SECONDS" "$calls" "$rss" "$hwm" "$fds" "$threads" "$cpu"
}

SECONDS=0
sample
(cd "$work" && exec sipp 127.0.0.1:5070 -sn uac -s 112 -i 127.0.0.1 -p 5071 -mp 24000 -cp 8891 \
  -r "$RATE" -m "$CALLS" -d "$HOLD_MS" -nostdin -timeout "$(( CALLS / RATE + 120 ))s" \
  -trace_stat -stf "$work/uac.csv" > "$work/uac.out" 2>&1) &
uac_pid=$!
while kill -0 "$uac_pid" 2>/dev/null; do
  # Sleep in short steps so the run ends soon after SIPp does.
  for _ in $(seq "$EVERY"); do kill -0 "$uac_pid" 2>/dev/null || break; sleep 1; done
  sample
done
uac_status=0
wait "$uac_pid" || uac_status=$?
sleep 3   # the last BYEs and recordings settle; the numbers below are read after it
sample
ok=$(tail -1 "$work/uac.csv" | awk -F';' '{print $16}')
failed=$(tail -1 "$work/uac.csv" | awk -F';' '{print $18}')
recs=$(sqlite3 "file:$work/siaga.db?mode=ro" "select count(*) from calls where recording_sha256 is not null")
echo "== SIPp uac exit $uac_status: successful $ok, failed $failed; recordings with SHA-256: $recs;" \
  "call log $(du -h "$work/siaga.db" | cut -f1), recordings $(du -sh "$work/rec" | cut -f1)"
