#!/usr/bin/env bash
# TCP exhaustion bench: one host (127.0.0.11) opens SLOW "slowloris" connections (the start of
# an INVITE, then one header byte a second) and IDLE connections that never send a byte,
# then a legitimate caller (127.0.0.1) makes one 112 call over TCP (SIPp -t t1) and one over
# UDP, both bridged to a SIPp agency. Reports whether each call was answered, bridged and
# recorded (a call-log row with the recording's SHA-256), whether the gateway's answer carried
# usable media (not c=IN IP4 0.0.0.0 / port 9), how many attacking connections got through
# and how many the gateway closed while they were held, the gateway's open files, CPU and the
# size of what it wrote to stderr (an accept loop that spins shows in both).
#
#   benches/tcp_exhaust.sh                          5000 idle + 300 slowloris, no file limit
#   NOFILE=1024 benches/tcp_exhaust.sh              the gateway under prlimit --nofile=1024
#   NOFILE=1024:$(ulimit -Hn) benches/tcp_exhaust.sh   soft 1024, hard limit unchanged (as
#                                                 systemd's default 1024:524288 for a service)
#
# Environment: IDLE (default 5000), SLOW (default 300), HOLD_S (how long the attack holds its
#   connections, default 60; the calls start once every connection has been tried),
#   CALL_MS (length of each 112 call, default 3000), NOFILE (the gateway's file limit, as
#   prlimit --nofile takes it: SOFT[:HARD]; default none), NETNS (default tcp112; '' = host
#   loopback), OUT (default /tmp/siaga-tcp: results.jsonl and runs/), PLAN, KEEP=1.
# Needs root (namespace), sipp, sqlite3, python3. Loopback traffic only; every wait bounded.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
IDLE="${IDLE:-5000}"
SLOW="${SLOW:-300}"
HOLD_S="${HOLD_S:-60}"
CALL_MS="${CALL_MS:-3000}"
NOFILE="${NOFILE:-}"
NETNS="${NETNS-tcp112}"
OUT="${OUT:-/tmp/siaga-tcp}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"
SCEN="$HERE/benches/flood"

cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
in_ns=()
if [ -n "$NETNS" ]; then
  ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
  ip netns exec "$NETNS" ip link set lo up
  in_ns=(ip netns exec "$NETNS")
fi
work="$OUT/runs/$(date +%Y%m%d-%H%M%S)-tcp-${IDLE}i-${SLOW}s${NOFILE:+-nofile$NOFILE}"
mkdir -p "$work"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== machine: $(uptime)"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work/siaga.db"* "$work/rec"; fi
  # The gateway's stderr can reach GBs (a spinning accept loop logs each turn): keep its tail.
  if [ "$(stat -c %s "$work/gw.stderr" 2>/dev/null || echo 0)" -gt 1048576 ]; then
    tail -c 1048576 "$work/gw.stderr" > "$work/gw.stderr.tail" && mv "$work/gw.stderr.tail" "$work/gw.stderr"
  fi
}
trap cleanup EXIT

limit=()
[ -n "$NOFILE" ] && limit=(prlimit "--nofile=$NOFILE")
"${in_ns[@]}" "${limit[@]}" "$HERE/target/release/siaga" serve \
  --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060 \
  --db "$work/siaga.db" --recordings "$work/rec" --rtp-ports 30000-39999 \
  --dialplan "$PLAN" > "$work/gw.stdout" 2> "$work/gw.stderr" &
gw=$!
pids+=("$gw")
for _ in $(seq 150); do grep -q '^listening tcp' "$work/gw.stdout" && break; sleep 0.1; done
grep -q '^listening tcp' "$work/gw.stdout" || { tail -5 "$work/gw.stderr"; exit 1; }
gw_limit="$(awk '/Max open files/ {print $4 ":" $5}' "/proc/$gw/limits")"

(cd "$work" && exec "${in_ns[@]}" sipp -sf "$SCEN/uas_sig.xml" -i 127.0.0.1 -p 5090 -mp 26000 \
  -cp 8891 -nostdin -default_behaviors all,-abortunexp -timeout "$(( HOLD_S + 120 ))s" \
  -trace_stat -stf "$work/uas_stat.csv" -fd 1 > /dev/null 2> "$work/uas.stderr") &
pids+=($!)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
ticks0=$(cpu_ticks)
SECONDS=0
"${in_ns[@]}" python3 "$SCEN/tcp_attack.py" --target 127.0.0.1:5060 --source 127.0.0.11 \
  --idle "$IDLE" --slow "$SLOW" --hold "$HOLD_S" --ready "$work/attack.ready" \
  --report "$work/attack.json" > "$work/attack.stdout" 2> "$work/attack.stderr" &
attack=$!
pids+=("$attack")
for _ in $(seq 600); do [ -e "$work/attack.ready" ] || ! kill -0 "$attack" 2>/dev/null && break; sleep 0.1; done
[ -e "$work/attack.ready" ] || { echo "attack did not get ready"; cat "$work/attack.stderr"; exit 1; }
echo "== attack in place after ${SECONDS}s: $(cat "$work/attack.ready")"
fds_during=$(ls "/proc/$gw/fd" | wc -l)

# One 112 call over TCP, then one over UDP, from the legitimate caller (SIPp exit code 0 = the
# call went INVITE → 200 → ACK → BYE → 200).
call() { # transport port
  local rc=0
  (cd "$work" && "${in_ns[@]}" timeout 90 sipp 127.0.0.1:5060 -sf "$SCEN/uac_sig.xml" -s 112 \
    -t "$1" -i 127.0.0.1 -p "$2" -mp "$(( $2 + 20000 ))" -cp "$(( $2 + 3000 ))" -m 1 -d "$CALL_MS" \
    -recv_timeout 20s -timeout 60s -nostdin -trace_stat -stf "$work/uac_$1.csv" -fd 1 \
    > /dev/null 2> "$work/uac_$1.stderr") || rc=$?
  echo "$rc"
}
tcp_rc=$(call t1 5071)
udp_rc=$(call u1 5072)
echo "== calls done after ${SECONDS}s: TCP sipp exit $tcp_rc, UDP sipp exit $udp_rc"
fds_after_calls=$(ls "/proc/$gw/fd" | wc -l)

wait "$attack" || true
ticks1=$(cpu_ticks)
elapsed=$SECONDS
gw_cpu_pct=$(awk -v a="$ticks0" -v b="$ticks1" -v s="$elapsed" -v hz="$(getconf CLK_TCK)" \
  'BEGIN {printf "%.1f", 100 * (b - a) / hz / (s > 0 ? s : 1)}')
rss_peak_mb=$(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$gw/status")
kill -TERM "$gw" 2>/dev/null || true
for _ in $(seq 300); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
stderr_bytes=$(stat -c %s "$work/gw.stderr")

# What the call log says about the two calls (by transport), and the SDP the caller got.
q() { sqlite3 "file:$work/siaga.db?mode=ro" "$1" 2>/dev/null || echo '?'; }
row() { # transport → answered|bridged|recorded|media_ok
  local t=$1 id
  id=$(q "select id from calls where kind='emergency' and lower(transport)='$t' order by id limit 1")
  if [ -z "$id" ] || [ "$id" = '?' ]; then echo "0|0|0|0"; return; fi
  local ans br rec zero
  ans=$(q "select answered_at is not null from calls where id=$id")
  br=$(q "select count(*) > 0 from call_events where call=$id and kind='agency_answered'")
  rec=$(q "select recording_sha256 is not null from calls where id=$id")
  zero=$(q "select count(*) from sip_messages where call=$id and direction='out' and first_line like 'SIP/2.0 200%' and (cast(raw as text) like '%c=IN IP4 0.0.0.0%' or cast(raw as text) like '%m=audio 9 %')")
  echo "$ans|$br|$rec|$(( zero == 0 ? 1 : 0 ))"
}
IFS='|' read -r tcp_ans tcp_br tcp_rec tcp_media <<< "$(row tcp)"
IFS='|' read -r udp_ans udp_br udp_rec udp_media <<< "$(row udp)"
attack_json="$(cat "$work/attack.json" 2>/dev/null || echo '{}')"

result=$(python3 - "$attack_json" <<EOF
import json, sys
r = {"label": "tcp-exhaust", "workdir": "$work", "idle": $IDLE, "slow": $SLOW, "hold_s": $HOLD_S,
     "nofile": "$NOFILE", "gw_nofile": "$gw_limit", "netns": "$NETNS",
     "loadavg_start": "$load_start", "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
     "attack": json.loads(sys.argv[1]),
     "tcp_call": {"sipp_rc": $tcp_rc, "answered": $tcp_ans == 1, "bridged": $tcp_br == 1,
                  "recorded": $tcp_rec == 1, "media_ok": $tcp_media == 1},
     "udp_call": {"sipp_rc": $udp_rc, "answered": $udp_ans == 1, "bridged": $udp_br == 1,
                  "recorded": $udp_rec == 1, "media_ok": $udp_media == 1},
     "gw_fds_during_attack": $fds_during, "gw_fds_after_calls": $fds_after_calls,
     "gw_cpu_pct": $gw_cpu_pct, "rss_peak_mb": $rss_peak_mb, "gw_stderr_bytes": $stderr_bytes,
     "elapsed_s": $elapsed}
print(json.dumps(r))
EOF
)
echo "$result" >> "$OUT/results.jsonl"
echo "$result" > "$work/result.json"
python3 - "$result" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
a = r["attack"]
yn = lambda c: " ".join(f"{k}={'yes' if c[k] else 'NO'}" for k in ("answered", "bridged", "recorded", "media_ok"))
print(f"file limit {r['gw_nofile']}; attack from 127.0.0.11: {a.get('idle_open')}/{r['idle']} idle and "
      f"{a.get('slow_open')}/{r['slow']} slowloris connections established ({a.get('connect_failed')} failed); "
      f"closed by the gateway within {r['hold_s']} s: {a.get('idle_closed_by_gateway')} idle, "
      f"{a.get('slow_closed_by_gateway')} slowloris")
print(f"TCP 112 call: sipp exit {r['tcp_call']['sipp_rc']}, {yn(r['tcp_call'])}")
print(f"UDP 112 call: sipp exit {r['udp_call']['sipp_rc']}, {yn(r['udp_call'])}")
print(f"gateway: {r['gw_fds_during_attack']} open files during the attack, CPU {r['gw_cpu_pct']} % of a core, "
      f"peak RSS {r['rss_peak_mb']} MB, stderr {r['gw_stderr_bytes']} bytes; load {r['loadavg_start']}")
EOF
