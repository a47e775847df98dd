#!/usr/bin/env bash
# Call set-up rate benchmark: the highest rate of INVITE→200→ACK→BYE calls (no media) the
# gateway sustains with zero failed calls, and its CPU per call, every SIP message logged.
#
# Uses the shared SIPp load runner (../shared/bench/bench.py, external-SUT mode) inside its
# network namespace. Run as root after ../shared/bench/setup.sh. Usage:
#   benches/cps.sh [RATE ...]          default ladder: 500 1000 1500 2000 2500 3000 4000
# Environment: DURATION (s of call starts per step, default 20), HOLD_MS (call length after
#              the ACK, default 1000), BENCH (runner dir),
#              PLAN (dialplan; default benches/bench-plan.toml: 112 → the runner's agency UAS,
#              so each call is answered, bridged as a B2BUA, recorded and logged),
#              SIAGA_ARGS (more gateway flags, e.g. "--hep udp:127.0.0.1:9060"),
#              BIN (the gateway binary; default: cargo build --release).
# Results: one JSON line per step in $BENCH_OUT/results.jsonl (default /tmp/siaga-bench).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$HERE/../shared/bench}"
DURATION="${DURATION:-20}"
HOLD_MS="${HOLD_MS:-1000}"
NETNS="${NETNS:-bench112}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"
export BENCH_OUT="${BENCH_OUT:-/tmp/siaga-bench}"
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(500 1000 1500 2000 2500 3000 4000)

if [ -z "${BIN:-}" ]; then
  cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
  BIN="$HERE/target/release/siaga"
fi
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

for rate in "${RATES[@]}"; do
  work="$(mktemp -d /tmp/siaga-cps.XXXX)"
  # A fresh gateway per step: its own empty call log, so every step logs from zero.
  ip netns exec "$NETNS" nice -n -10 "$BIN" serve \
    --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
    --db "$work/siaga.db" --recordings "$work/rec" --rtp-ports 30000-39999 \
    --dialplan "$PLAN" ${SIAGA_ARGS:-} \
    > "$work/stdout" 2> "$work/stderr" &
  echo $! > "$work/gw.pid"
  # Wait (bounded) for the listener line instead of sleeping blindly.
  for _ in $(seq 100); do grep -q '^listening udp' "$work/stdout" && break; sleep 0.1; done
  set +e
  python3 "$BENCH/bench.py" cps --sut external --sut-pid "gw=@$work/gw.pid" \
    --target 127.0.0.1:5060 --number 112 --rate "$rate" --duration "$DURATION" \
    --hold-ms "$HOLD_MS" --netns "$NETNS" --label "siaga-cps-$rate"
  status=$?
  set -e
  kill -TERM "$(cat "$work/gw.pid")" 2>/dev/null || true
  wait "$(cat "$work/gw.pid")" 2>/dev/null || true
  calls=$(sqlite3 "$work/siaga.db" "select count(*) from calls" 2>/dev/null || echo '?')
  msgs=$(sqlite3 "$work/siaga.db" "select count(*) from sip_messages" 2>/dev/null || echo '?')
  ended=$(sqlite3 "$work/siaga.db" "select count(*) from calls where end_reason='caller_hung_up'" 2>/dev/null || echo '?')
  recs=$(sqlite3 "$work/siaga.db" "select count(*) from calls where recording_sha256 is not null" 2>/dev/null || echo '?')
  echo "== rate $rate: runner exit $status; call log: $calls calls ($ended hung up by caller, $recs recordings with SHA-256), $msgs SIP messages"
  rm -rf "$work"
  fails=$(python3 "$BENCH/bench.py" table 2>/dev/null | awk -v l="siaga-cps-$rate" '$1==l {f=$6} END {print f+0}')
  [ "$status" = 0 ] && [ "$fails" = 0 ] || break
done
python3 "$BENCH/bench.py" table | tail -n "$(( ${#RATES[@]} + 3 ))"
