#!/usr/bin/env bash
# Digit-to-agency latency: how long after a caller's key press (a SIP INFO reaching the
# gateway) the agency's INVITE leaves the gateway, with CONCURRENT calls up. Both moments are
# taken from a packet capture on the loopback (tshark, microsecond timestamps), outside the
# gateway. Run as root (network namespace, capture).
#   benches/digit_to_invite.sh [CONCURRENT]      default 100
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-100}"
NETNS="${NETNS:-siaga-d2i}"
CALLS=$(( N * 3 ))
work="$(mktemp -d /tmp/siaga-d2i.XXXX)"
cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

# The default plan with the police desks moved to one SIPp agency on 127.0.0.1:5090.
sed -e 's/127.0.0.1:5081/127.0.0.1:5090/; s/127.0.0.1:5082/127.0.0.1:5090/' \
    -e "s#prompt_dir = \"prompts\"#prompt_dir = \"$HERE/dialplans/prompts\"#" \
    "$HERE/dialplans/default.toml" > "$work/plan.toml"

ns() { ip netns exec "$NETNS" "$@"; }
ns "$HERE/target/release/siaga" serve --listen udp:127.0.0.1:5060 --db "$work/siaga.db" \
  --recordings "$work/rec" --rtp-ports 30000-39999 --dialplan "$work/plan.toml" \
  > "$work/gw.out" 2> "$work/gw.err" &
gw=$!
for _ in $(seq 100); do grep -q '^listening udp' "$work/gw.out" && break; sleep 0.1; done
ns tshark -q -i lo -f "udp port 5060" -w "$work/sip.pcap" > /dev/null 2>&1 &
shark=$!
sleep 2   # tshark needs a moment to open the interface; the capture is what we measure
(cd "$work" && ns sipp -sf /work/shared/bench/sipp/uas_sig.xml -p 5090 -i 127.0.0.1 -mp 5150 -cp 5160 \
  -m "$CALLS" -timeout 300s -nostdin > /dev/null 2>&1) &
agency=$!
(cd "$work" && ns sipp 127.0.0.1:5060 -sf "$HERE/benches/sipp/uac_digit_bench.xml" -s 112 \
  -key digit 1 -i 127.0.0.1 -mp 5170 -cp 5180 -l "$N" -r 20 -m "$CALLS" -d 5000 \
  -timeout 300s -timeout_error -nostdin -trace_stat > /dev/null 2>&1) && callers=ok || callers=failed
kill "$agency" 2>/dev/null || true
sleep 1
kill "$shark" 2>/dev/null || true
wait "$shark" 2>/dev/null || true
kill -TERM "$gw"; wait "$gw" || true
echo "callers: $callers ($CALLS calls, $N concurrent)"
ns tshark -r "$work/sip.pcap" -Y 'sip.Method == "INFO" || (sip.Method == "INVITE" && udp.dstport == 5090)' \
  -T fields -e frame.time_epoch -e sip.Method -e sip.from.user > "$work/events.tsv" 2>/dev/null
python3 - "$work/events.tsv" <<'PY'
import sys, statistics
info, invite = {}, {}
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 3:
        continue
    t, method, user = float(parts[0]), parts[1], parts[2]
    table = info if method == "INFO" else invite
    table.setdefault(user, t)
deltas = sorted((invite[u] - info[u]) * 1000 for u in info if u in invite and invite[u] >= info[u])
if not deltas:
    sys.exit("no INFO/INVITE pairs found")
q = lambda p: deltas[min(len(deltas) - 1, int(p * len(deltas)))]
print(f"pairs {len(deltas)}  median {statistics.median(deltas):.3f} ms  p90 {q(0.9):.3f} ms  "
      f"p99 {q(0.99):.3f} ms  max {deltas[-1]:.3f} ms")
PY
rm -rf "$work" 2>/dev/null || true
