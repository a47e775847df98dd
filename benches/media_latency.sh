#!/usr/bin/env bash
# Media latency: payload-level loss and added one-way delay of the media relay, Siaga or the peer
# (Kamailio + rtpengine), under the shared SIPp runner's media load (caller ⇄ SUT ⇄ agency, G.711
# both ways, relayed and recorded). Run as root after ../shared/bench/setup.sh.
#
#   benches/media_latency.sh [--sut siaga|peer] [--bin PATH] [CONCURRENT ...]   default 20 200 800
#
#   --sut siaga   (default) the gateway: PATH, or ./target/release/siaga built from this tree
#   --sut peer    the runner's own Kamailio + rtpengine
# Environment: HOLD_S (30), WINDOWS (2), BENCH (../shared/bench), NETNS (bench112), PLAN,
#   BENCH_OUT (/tmp/siaga-bench), KEEP=1 keeps the capture (moved into the runner's run dir),
#   PAYLOAD_BYTES (32), MAX_DELAY_MS (500), LABEL (label prefix).
# Output: one JSON line per run in $BENCH_OUT/latency.jsonl, and a table
#   (python3 benches/media_latency.py --table $BENCH_OUT/latency.jsonl prints all runs).
#
# How it measures. While the runner's media run lasts, tcpdump records the loopback of the
# runner's network namespace: RTP only (UDP with one end in the SIPp ports 10000-29999 and the
# other in the SUT's media ports), cut after PAYLOAD_BYTES of RTP payload, bounded in time (the
# run's own guard) and size (packet count: 1.5 x the packets the run should send, never more
# than the free space allows), deleted afterwards. benches/media_latency.py then reads the pcap:
#  - flows: caller→SUT (source 10000-19999), SUT→agency (destination 20000-29999), and back;
#    a flow is a UDP port pair, and a new SSRC after a pause starts a new one (ports are reused).
#  - pairing flows: every call streams the same file, so a payload recurs in every call and, for
#    silence, within a call. A packet whose payload does not recur in its own flow within twice
#    the largest delay searched is an anchor. Each caller→SUT flow's anchors vote for the
#    SUT→agency flows that carry the same payload 0..MAX_DELAY_MS later; a flow with votes from
#    at least half of the anchors in its lifetime, starting and ending with the input flow
#    (within 4 s), is a candidate. Calls are time-shifted copies of each other, so the next calls
#    are candidates too (steady but larger delays): the pairs kept are the largest set that
#    keeps the order in which calls started (the SUT does not overtake one call with another),
#    with the least sum of squared delays. Neighbours that only the order could tell apart are
#    counted in the "ord" column (0: every pair was unambiguous).
#  - matching packets within a pair: each anchor to its copy with the delay nearest the previous
#    anchor's; between two anchors, the other packets payload by payload in order, and where a
#    copy is missing (loss) or extra (relay-generated silence) by the order-keeping matching that
#    pairs the most packets with delays nearest the line between the two anchors' delays;
#    neighbours the relay swapped are matched too.
#  - reported per direction: sent, delivered, lost (and lost in the last second of their call),
#    generated (output packets that copy no input), and the added one-way delay p50/p90/p99/
#    p99.9/max over all delivered packets. The same for agency→SUT vs SUT→caller.
# Details: the header of benches/media_latency.py.
# Checks: the runner's own iptables counters see the same packets as totals, so the table's "chk"
# column is |sent - counted sent| + |(generated - lost) - (counted delivered - counted sent)| per
# direction: 0 when the capture saw every packet the counters did. tcpdump's kernel drops are in
# the JSON line ("capture"). "oth%" is the runner's CPU of processes outside the run (the
# capture's tcpdump counts there): on a shared box delays grow with it, so compare runs with
# similar oth%.
# The analyser is tested by benches/media_latency_test.py (synthetic capture, no root).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$HERE/../shared/bench}"
HOLD_S="${HOLD_S:-30}"
WINDOWS="${WINDOWS:-2}"
NETNS="${NETNS:-bench112}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"
PAYLOAD_BYTES="${PAYLOAD_BYTES:-32}"
MAX_DELAY_MS="${MAX_DELAY_MS:-500}"
KEEP="${KEEP:-0}"
export BENCH_OUT="${BENCH_OUT:-/tmp/siaga-bench}"

SUT=siaga
BIN=""
LEVELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sut) SUT="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) LEVELS+=("$1"); shift ;;
  esac
done
[ ${#LEVELS[@]} -gt 0 ] || LEVELS=(20 200 800)
case "$SUT" in
  siaga) SUT_PORTS=30000-39999 ;;   # as benches/media.sh: outside the runner's 10000-29999
  peer) SUT_PORTS=40000-59999 ;;    # rtpengine.conf port-min/port-max
  *) echo "--sut must be siaga or peer" >&2; exit 2 ;;
esac
if [ "$SUT" = siaga ] && [ -z "$BIN" ]; then
  cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
  BIN="$HERE/target/release/siaga"
fi
[ "$SUT" = peer ] || [ -x "$BIN" ] || { echo "no executable siaga at $BIN" >&2; exit 2; }
[ -f "$BENCH/bench.py" ] || { echo "no shared runner at $BENCH (set BENCH=/path/to/shared/bench)" >&2; exit 2; }
command -v tcpdump >/dev/null || { echo "tcpdump missing (run $BENCH/setup.sh)" >&2; exit 2; }
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up
mkdir -p "$BENCH_OUT"

# Ethernet (the namespace's lo) + IPv4 + UDP + RTP header + the payload bytes compared.
SNAPLEN=$(( 14 + 20 + 8 + 12 + PAYLOAD_BYTES ))
work="" cap_pid="" gw_pid=""
cleanup() {   # on any exit: stop what this script started (by PID), drop the capture
  [ -z "$cap_pid" ] || kill -INT "$cap_pid" 2>/dev/null || true
  [ -z "$gw_pid" ] || kill -TERM "$gw_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
FILTER="udp and portrange 10000-29999 and portrange $SUT_PORTS"

for n in "${LEVELS[@]}"; do
  work="$(mktemp -d /tmp/siaga-latency.XXXX)"
  label="${LABEL:-}${SUT}-lat-$n"
  # Size bound: 4 RTP legs x 50 pps per call, x1.5; time bound: the runner's own guard + 60 s.
  max_pkts=$(( n * WINDOWS * HOLD_S * 50 * 4 * 3 / 2 + 10000 ))
  need_kb=$(( max_pkts * (SNAPLEN + 16) / 1024 ))
  free_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
  if [ "$need_kb" -gt "$(( free_kb / 2 ))" ]; then
    echo "capture could need ${need_kb} KiB, only ${free_kb} KiB free in $work" >&2; rm -rf "$work"; exit 1
  fi
  guard_s=$(( (WINDOWS + 1) * HOLD_S + 60 + 120 ))

  if [ "$SUT" = siaga ]; then
    ip netns exec "$NETNS" nice -n -10 "$BIN" serve \
      --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
      --db "$work/siaga.db" --recordings "$work/rec" --rtp-ports "$SUT_PORTS" \
      --dialplan "$PLAN" > "$work/stdout" 2> "$work/stderr" &
    gw_pid=$!
    echo "$gw_pid" > "$work/gw.pid"
    for _ in $(seq 100); do grep -q '^listening udp' "$work/stdout" && break; sleep 0.1; done
    grep -q '^listening udp' "$work/stdout" || { echo "siaga did not start:"; tail "$work/stderr"; exit 1; }
    runner_args=(--sut external --sut-pid "gw=@$work/gw.pid" --rec-dir "$work/rec" --rec-kind wav)
  else
    runner_args=(--sut peer)
  fi

  # The capture, in the runner's namespace, at the runner's priority so that it drops nothing.
  ip netns exec "$NETNS" nice -n -10 timeout -s INT "$guard_s" \
    tcpdump -i lo -n -s "$SNAPLEN" -B 65536 -c "$max_pkts" --time-stamp-precision=nano \
    -w "$work/rtp.pcap" "$FILTER" 2> "$work/tcpdump.stderr" &
  cap_pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$work/tcpdump.stderr" && break; sleep 0.1; done
  grep -q 'listening on' "$work/tcpdump.stderr" || { echo "tcpdump did not start:"; cat "$work/tcpdump.stderr"; exit 1; }

  set +e
  python3 "$BENCH/bench.py" media "${runner_args[@]}" --target 127.0.0.1:5060 --number 112 \
    --concurrent "$n" --hold-s "$HOLD_S" --windows "$WINDOWS" --netns "$NETNS" \
    --label "$label" | tee "$work/runner.out"
  status=${PIPESTATUS[0]}
  set -e

  kill -INT "$cap_pid" 2>/dev/null || true
  wait "$cap_pid" 2>/dev/null || true
  cap_pid=""
  if [ -n "$gw_pid" ]; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
    gw_pid=""
  fi
  rundir="$(sed -n 's/.*run dir //p' "$work/runner.out" | tail -n 1)"
  meta="$(python3 - "$work/tcpdump.stderr" "$rundir/result.json" "$SUT" "$n" "$HOLD_S" "$WINDOWS" "$status" "$BIN" <<'EOF'
import json, os, re, sys
cap, result, sut, n, hold, windows, status, binary = sys.argv[1:]
meta = {"sut": sut, "concurrent": int(n), "hold_s": float(hold), "windows": int(windows),
        "runner_exit": int(status), "rundir": os.path.dirname(result)}
if sut == "siaga":
    meta["binary"] = binary
text = open(cap).read()
for key, pat in (("captured", r"(\d+) packets? captured"), ("received_by_filter", r"(\d+) packets? received by filter"),
                 ("dropped_by_kernel", r"(\d+) packets? dropped by kernel")):
    m = re.search(pat, text)
    meta.setdefault("capture", {})[key] = int(m.group(1)) if m else None
if os.path.exists(result):
    r = json.load(open(result))
    steady = r.get("cpu_steady_pct", {})
    meta.update(oth_pct=steady.get("_other"), sys_pct=steady.get("_system"), calls_ok=r.get("calls_ok"),
                calls_failed=r.get("calls_failed"), uas_failed=r.get("uas_failed"),
                runner_rtp=r.get("rtp"), sut_cpu_s_per_call_min=r.get("sut_cpu_s_per_call_min"))
print(json.dumps(meta))
EOF
)"
  echo "== $label: runner exit $status; capture: $(grep -E 'captured|dropped' "$work/tcpdump.stderr" | tr '\n' ' ')"
  python3 "$HERE/benches/media_latency.py" "$work/rtp.pcap" --sut-ports "$SUT_PORTS" \
    --payload-bytes "$PAYLOAD_BYTES" --max-delay-ms "$MAX_DELAY_MS" --label "$label" \
    --meta "$meta" --jsonl "$BENCH_OUT/latency.jsonl"
  if [ "$KEEP" = 1 ] && [ -d "$rundir" ]; then
    mv "$work/rtp.pcap" "$rundir/rtp.pcap"
    echo "$meta" > "$rundir/latency-meta.json"
    echo "capture kept: $rundir/rtp.pcap; analyse it again with"
    echo "  python3 benches/media_latency.py $rundir/rtp.pcap --sut-ports $SUT_PORTS --label $label --meta \"\$(cat $rundir/latency-meta.json)\""
  fi
  rm -rf "$work"
  work=""
  [ "$status" = 0 ] || break
done
