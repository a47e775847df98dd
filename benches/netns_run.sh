# Sourced by the benches that run the gateway in a network namespace of their own
# (benches/cluster.sh, benches/labelled_calls.sh). Needs HERE (the repository), NETNS and
# WORK_PREFIX set; sets BIN (the gateway, built in release unless given), NS (the command
# prefix that runs in the namespace), work (a fresh directory), pids (processes stopped at
# exit) and the exit trap (KEEP=1 keeps the work directory).
if [ -z "${BIN:-}" ]; then
  cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
  BIN="$HERE/target/release/siaga"
fi
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up
NS=(ip netns exec "$NETNS")
work="$(mktemp -d "/tmp/$WORK_PREFIX.XXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
