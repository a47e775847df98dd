#!/usr/bin/env bash
# Media benchmark: the most concurrent calls the gateway holds with RTP both ways (caller ⇄
# gateway ⇄ agency, relayed and recorded to WAV) at < 0.01 % packet loss, and its CPU-seconds
# per call-minute. Uses the shared SIPp runner (../shared/bench/bench.py, external-SUT mode,
# iptables packet counters in its network namespace). Run as root after ../shared/bench/setup.sh.
#   benches/media.sh [CONCURRENT ...]     default ladder: 100 200 400 600 800 1000
# Environment: HOLD_S (call length, default 30), WINDOWS (default 2), BENCH, PLAN, NETNS,
#   SIAGA_ARGS (more gateway flags, e.g. "--hep udp:127.0.0.1:9060"), LABEL (label prefix).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$HERE/../shared/bench}"
HOLD_S="${HOLD_S:-30}"
WINDOWS="${WINDOWS:-2}"
NETNS="${NETNS:-bench112}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"
export BENCH_OUT="${BENCH_OUT:-/tmp/siaga-bench}"
LEVELS=("$@")
[ ${#LEVELS[@]} -gt 0 ] || LEVELS=(100 200 400 600 800 1000)

cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

for n in "${LEVELS[@]}"; do
  work="$(mktemp -d /tmp/siaga-media.XXXX)"
  # RTP ports outside the runner's 10000-29999 (its counters must see only SIPp's packets).
  ip netns exec "$NETNS" nice -n -10 "$HERE/target/release/siaga" serve \
    --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
    --db "$work/siaga.db" --recordings "$work/rec" --rtp-ports 30000-39999 \
    --dialplan "$PLAN" ${SIAGA_ARGS:-} > "$work/stdout" 2> "$work/stderr" &
  echo $! > "$work/gw.pid"
  for _ in $(seq 100); do grep -q '^listening udp' "$work/stdout" && break; sleep 0.1; done
  set +e
  python3 "$BENCH/bench.py" media --sut external --sut-pid "gw=@$work/gw.pid" \
    --rec-dir "$work/rec" --rec-kind wav --target 127.0.0.1:5060 --number 112 \
    --concurrent "$n" --hold-s "$HOLD_S" --windows "$WINDOWS" --netns "$NETNS" \
    --label "${LABEL:-}siaga-media-$n"
  status=$?
  set -e
  kill -TERM "$(cat "$work/gw.pid")" 2>/dev/null || true
  wait "$(cat "$work/gw.pid")" 2>/dev/null || true
  recs=$(sqlite3 "$work/siaga.db" "select count(*) from calls where recording_sha256 is not null" 2>/dev/null || echo '?')
  calls=$(sqlite3 "$work/siaga.db" "select count(*) from calls" 2>/dev/null || echo '?')
  echo "== $n concurrent: runner exit $status; call log: $calls calls, $recs recordings with SHA-256"
  rm -rf "$work"
  [ "$status" = 0 ] || break
done
python3 "$BENCH/bench.py" table | tail -n "$(( ${#LEVELS[@]} + 4 ))"
