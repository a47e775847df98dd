#!/usr/bin/env bash
# Two Siaga nodes behind the Kamailio front of deploy/kamailio, in a network namespace.
# Run as root (network namespace). Two modes:
#
#   benches/cluster.sh failover   SIPp calls at a steady rate through the front; node B is
#       killed (kill -9) part way and restarted later. Reports how many new calls failed and
#       for how long, how many were answered after a detour (the INVITE the dead node never
#       answered, failed over after 1 s), the calls B held at the kill, and when B rejoined.
#       Env: RATE (calls/s, default 20), SECONDS_RUN (default 30), KILL_AT (s, default 10),
#       RESTART_AT (s, default 20), HOLD_MS (default 2000).
#   benches/cluster.sh cps RATE…  the shared runner's CPS ladder through the front (both
#       nodes and Kamailio counted as the SUT); compare with benches/cps.sh (one node alone).
#       Env: DURATION (default 20), HOLD_MS (default 1000).
#
# Common env: BIN (gateway binary; default: cargo build --release), NETNS (default
#   cluster112), BENCH (the shared runner, default ../shared/bench), PLAN (default
#   benches/bench-plan.toml: 112 → the agency UAS on 127.0.0.1:5090), PG=1 (both nodes on one
#   throw-away PostgreSQL in the namespace, as production would run; default: each node its
#   own SQLite), PG_RESTART_AT (failover mode, with PG=1: PostgreSQL is restarted this many
#   seconds into the run, and every call's record is checked afterwards), NODE_ARGS (more
#   flags for both nodes), KEEP=1 keeps the work directory.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$HERE/../shared/bench}"
NETNS="${NETNS:-cluster112}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"
MODE="${1:?usage: benches/cluster.sh failover | cps RATE…}"
shift
WORK_PREFIX=siaga-cluster
# shellcheck source=netns_run.sh
source "$HERE/benches/netns_run.sh"

# A throw-away PostgreSQL in the namespace (as the postgres user: initdb refuses root).
LOG_URL=""
if [ "${PG:-0}" = 1 ]; then
  pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  mkdir -p "$work/pg" && chmod 755 "$work" && chown postgres "$work/pg"
  pg() { "${NS[@]}" runuser -u postgres -- "$pgbin/$1" "${@:2}"; }
  pg initdb -D "$work/pg/data" -U siaga --auth=trust -E UTF8 > "$work/pg/initdb.log"
  pg_start() {
    pg pg_ctl -D "$work/pg/data" -l "$work/pg/log" -w \
      -o "-p 5433 -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=100" start > /dev/null
  }
  pg_start
  "${NS[@]}" "$pgbin/createdb" -h 127.0.0.1 -p 5433 -U siaga siaga
  LOG_URL="postgres://siaga@127.0.0.1:5433/siaga"
  trap 'pg pg_ctl -D "$work/pg/data" -m fast stop > /dev/null 2>&1 || true; cleanup' EXIT
fi
psql_q() { "${NS[@]}" psql -h 127.0.0.1 -p 5433 -U siaga -d siaga -tA -c "$1"; }

# node NAME PORT RTP-RANGE: starts a node, waits (bounded) for its listener line.
start_node() {
  local name="$1" port="$2" rtp="$3"
  mkdir -p "$work/$name"
  printf '[sip]\nload_balancers = ["127.0.0.1/32"]\n[log]\nspill_dir = "%s"\n' \
    "$work/$name/spill" > "$work/$name/siaga.toml"
  local store=(--db "$work/$name/siaga.db")
  [ -n "$LOG_URL" ] && store=(--log-url "$LOG_URL" --node "$name")
  "${NS[@]}" "$BIN" serve --config "$work/$name/siaga.toml" \
    --listen "udp:127.0.0.1:$port" --listen "tcp:127.0.0.1:$port" --http off \
    "${store[@]}" --recordings "$work/$name/rec" --rtp-ports "$rtp" \
    --dialplan "$PLAN" ${NODE_ARGS:-} > "$work/$name/stdout" 2>> "$work/$name/stderr" &
  echo $! > "$work/$name/pid"
  pids+=("$!")
  for _ in $(seq 100); do grep -q '^listening udp' "$work/$name/stdout" && break; sleep 0.1; done
  grep -q '^listening udp' "$work/$name/stdout" || { cat "$work/$name/stderr"; exit 1; }
}

start_front() {
  printf '1 sip:127.0.0.1:5061 0 0\n1 sip:127.0.0.1:5062 0 0\n' > "$work/nodes.list"
  "${NS[@]}" kamailio -f "$HERE/deploy/kamailio/kamailio.cfg" -DD -E -w "$work" -P "$work/k.pid" \
    -A 'LISTEN=udp:127.0.0.1:5060' -A "DISPATCHER=\"$work/nodes.list\"" \
    -A 'FALLBACK_NODE="sip:127.0.0.1:5061"' -A "CTL=\"unix:$work/front.ctl\"" \
    -A "FIFO=\"$work/front.fifo\"" -A 'CHILDREN=4' 2> "$work/kamailio.log" &
  echo $! > "$work/front.pid"
  pids+=("$!")
}

# node_flags PORT: the dispatcher's flags for the node on PORT (AP active, IP inactive).
node_flags() {
  kamcmd -s "unix:$work/front.ctl" dispatcher.list 2>/dev/null |
    awk -v uri="sip:127.0.0.1:$1" '$1=="URI:" {u=$2} $1=="FLAGS:" && u==uri {print $2}'
}

wait_flags() {
  local port="$1" want="$2"
  for _ in $(seq 200); do [ "$(node_flags "$port")" = "$want" ] && return 0; sleep 0.1; done
  echo "node $port never reached $want" >&2
  return 1
}

start_node a 5061 30000-34999
start_node b 5062 35000-39999
start_front
wait_flags 5061 AP
wait_flags 5062 AP

case "$MODE" in
failover)
  RATE="${RATE:-20}"
  SECONDS_RUN="${SECONDS_RUN:-30}"
  KILL_AT="${KILL_AT:-10}"
  RESTART_AT="${RESTART_AT:-20}"
  HOLD_MS="${HOLD_MS:-2000}"
  calls=$((RATE * SECONDS_RUN))
  mkdir -p "$work/sipp"
  "${NS[@]}" sipp -sf "$BENCH/sipp/uas_sig.xml" -i 127.0.0.1 -p 5090 -nostdin -bg \
    > /dev/null 2>&1 || true
  (cd "$work/sipp" && "${NS[@]}" sipp 127.0.0.1:5060 -sf "$BENCH/sipp/uac_sig.xml" -s 112 \
    -i 127.0.0.1 -p 5070 -r "$RATE" -m "$calls" -d "$HOLD_MS" -nostdin \
    -trace_stat -fd 1 -trace_rtt -rtt_freq 1 -timeout "$((SECONDS_RUN + 60))s" \
    > stdout 2> stderr) &
  sipp_pid=$!
  start=$(date +%s.%N)
  sleep "$KILL_AT"   # the schedule of the run, not a synchronisation
  kill_time=$(date +%s.%N)
  kill -KILL "$(cat "$work/b/pid")"
  open_b="select count(*) from calls where node = 'b' and answered_at is not null and ended_at is null"
  if [ -n "$LOG_URL" ]; then
    held=$(psql_q "$open_b")
  else
    held=$(sqlite3 "$work/b/siaga.db" \
      "select count(*) from calls where answered_at is not null and ended_at is null" 2>/dev/null || echo '?')
  fi
  t_inactive=""
  for _ in $(seq 100); do
    [ "$(node_flags 5062)" = IP ] && { t_inactive=$(date +%s.%N); break; }; sleep 0.05
  done
  # With a shared log, node a closes b's calls as node_lost (within 10 s is the target).
  t_node_lost=""
  if [ -n "$LOG_URL" ]; then
    for _ in $(seq 300); do
      [ "$(psql_q "$open_b")" = 0 ] && { t_node_lost=$(date +%s.%N); break; }; sleep 0.05
    done
    echo "node b's $held open calls closed by node a $(echo "${t_node_lost:-nan} - $kill_time" | bc 2>/dev/null) s after the kill:"
    psql_q "select end_reason, count(*) from calls where node = 'b' and ended_at >= (extract(epoch from now()) * 1000 - 60000) group by 1"
    echo "on the call-back list: $("${NS[@]}" "$BIN" calls list --call-backs --log-url "$LOG_URL" | grep -c node_lost || true)"
  fi
  if [ -n "${PG_RESTART_AT:-}" ] && [ -n "$LOG_URL" ]; then
    sleep "$(echo "$PG_RESTART_AT - $KILL_AT" | bc)"
    echo "PostgreSQL restarted at ${PG_RESTART_AT} s"
    pg pg_ctl -D "$work/pg/data" -m fast stop > /dev/null
    pg_start
    sleep "$(echo "$RESTART_AT - $PG_RESTART_AT" | bc)"
  else
    sleep "$(echo "$RESTART_AT - $KILL_AT" | bc)"
  fi
  restart_time=$(date +%s.%N)
  start_node b 5062 35000-39999
  wait_flags 5062 AP
  rejoin_time=$(date +%s.%N)
  wait "$sipp_pid" || true
  "${NS[@]}" pkill -f "sipp -sf $BENCH/sipp/uas_sig.xml" || true
  python3 "$HERE/benches/cluster_failover.py" --sipp-dir "$work/sipp" --start "$start" \
    --kill "$kill_time" --inactive "${t_inactive:-nan}" --restart "$restart_time" \
    --rejoin "$rejoin_time" --held-by-killed "$held" --rate "$RATE" \
    ${LOG_URL:+--shared-log} --node-a "$work/a/siaga.db" --node-b "$work/b/siaga.db"
  if [ -n "$LOG_URL" ]; then
    # Every call SIPp started has its row (drained: the nodes' queues and spills are written
    # once they are idle); by node and end reason.
    for _ in $(seq 100); do
      [ "$(psql_q "select count(*) from calls where ended_at is null")" = 0 ] && break; sleep 0.1
    done
    echo "calls in PostgreSQL: $(psql_q "select count(*) from calls") (SIPp started $calls)"
    psql_q "select node, coalesce(end_reason, 'open'), count(*) from calls group by 1, 2 order by 1, 2"
  fi
  ;;
cps)
  [ "$#" -gt 0 ] || set -- 200 400 600 800
  for rate in "$@"; do
    python3 "$BENCH/bench.py" cps --sut external --sut-pid "a=@$work/a/pid" \
      --sut-pid "b=@$work/b/pid" --sut-pid "front=@$work/front.pid" \
      --target 127.0.0.1:5060 --number 112 --rate "$rate" --duration "${DURATION:-20}" \
      --hold-ms "${HOLD_MS:-1000}" --netns "$NETNS" --label "cluster2-cps-$rate" || break
  done
  python3 "$BENCH/bench.py" table | tail -n "$(($# + 4))"
  ;;
*)
  echo "unknown mode $MODE" >&2
  exit 2
  ;;
esac
