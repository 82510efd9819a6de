#!/usr/bin/env bash
# Measures ringkv next to the systems it is compared with, in one run, on
# loopback: the figures in the README's Performance section come from here.
#
#   daemon/deploy/bench-peers.sh single   one daemon vs Redis (SET/GET)
#   daemon/deploy/bench-peers.sh five     five daemons vs OpenDHT (five nodes)
#   daemon/deploy/bench-peers.sh three    three daemons, N=3 W=2 R=2, vs a 3-member etcd
#   daemon/deploy/bench-peers.sh all
#
# Needs the peers from Debian (see ../shared/peers/README.md):
#   apt-get install -y redis-server redis-tools etcd-server etcd-client dhtnode python3-opendht
# PEERS points at the peers' helper scripts (default ../shared/peers).
# These machines are shared and noisy: compare the ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
WORK=$(mktemp -d /tmp/ringkv-bench.XXXXXX)
BIN=$WORK/ringkv
N_OPS=${N_OPS:-100000}
trap 'cleanup' EXIT

cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${REDIS_STARTED:-}" ] && redis-cli -p 7001 shutdown nosave >/dev/null 2>&1 || true
  [ -f "$WORK/etcd/pids" ] && stop_etcd || true
  rm -rf "$WORK"
}

say() { printf '\n== %s\n' "$*"; }

go build -o "$BIN" ./cli/ringkv

# start_nodes COUNT FLAGS... starts COUNT daemons (node 1 first, the others
# bootstrapping from it) and waits until all are ready.
start_nodes() {
  local count=$1; shift
  local seed=""
  for i in $(seq 1 "$count"); do
    local dir=$WORK/n$i
    local args=(daemon --data-dir "$dir" --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1
      --api 127.0.0.1:0 --zone "z$(( (i - 1) % 3 ))" --log-level warn "$@")
    [ -n "$seed" ] && args+=(--bootstrap "$seed")
    "$BIN" "${args[@]}" >"$WORK/n$i.log" 2>&1 &
    echo $! >"$WORK/n$i.pid"
    for _ in $(seq 200); do [ -s "$dir/api" ] && break; sleep 0.05; done
    for _ in $(seq 600); do "$BIN" --data-dir "$dir" health >/dev/null 2>&1 && break; sleep 0.1; done
    if [ -z "$seed" ]; then
      seed=$("$BIN" --data-dir "$dir" id -o json | grep -o '"/ip4/127.0.0.1/tcp/[^"]*"' | head -1 | tr -d '"')
    fi
  done
}

stop_nodes() {
  for p in "$WORK"/n*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; rm -f "$p"; done
  wait 2>/dev/null || true
  rm -rf "$WORK"/n*
}

rk() { "$BIN" --data-dir "$WORK/n1" "$@"; }

# start_etcd starts the 3-member etcd and fails unless every member it
# started runs and answers healthy: an etcd left over from an earlier run,
# still on the ports, keeps the new members from starting (and would
# answer in their place).
start_etcd() {
  local endpoints healthy=""
  endpoints=$("$PEERS/etcd-cluster.sh" start "$WORK/etcd")
  for _ in $(seq 50); do
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1 && { healthy=1; break; }
    sleep 0.2
  done
  sleep 0.5 # a member that cannot bind or join exits at once
  local p
  for p in $(cat "$WORK/etcd/pids"); do kill -0 "$p" 2>/dev/null || healthy=""; done
  [ -n "$healthy" ] && return 0
  echo "etcd did not start (see $WORK/etcd/n*.log); is an etcd from an earlier run still on ports 21379-23380?" >&2
  tail -n 2 "$WORK"/etcd/n*.log >&2
  return 1
}

# stop_etcd stops the members and waits until they have exited and freed
# their ports, so that the next run can start its own.
stop_etcd() {
  local pids
  pids=$(cat "$WORK/etcd/pids" 2>/dev/null || true)
  "$PEERS/etcd-cluster.sh" stop "$WORK/etcd" >/dev/null 2>&1 || true
  for p in $pids; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}

rss_kib() { grep VmRSS "/proc/$(cat "$WORK/n1.pid")/status" | awk '{print $2}'; }

single() {
  say "one daemon vs Redis, 100-byte values, -c 50"
  for sync in true false; do
    start_nodes 1 --replicas 1 --write-quorum 1 --read-quorum 1 --sync=$sync
    sleep 2
    echo "idle RSS (sync=$sync): $(rss_kib) KiB"
    echo "-- ringkv put, sync=$sync"; rk bench --op put -c 50 -n "$N_OPS" --value-size 100
    if [ $sync = true ]; then echo "-- ringkv get"; rk bench --op get -c 50 -n "$N_OPS" --value-size 100; fi
    stop_nodes
  done
  redis-server --port 7001 --save '' --appendonly no --daemonize yes >/dev/null; REDIS_STARTED=1
  sleep 0.5
  echo "-- redis-benchmark"; redis-benchmark -p 7001 -t set,get -n 200000 -c 50 -d 100 -q
  redis-cli -p 7001 shutdown nosave >/dev/null 2>&1 || true; REDIS_STARTED=
}

five() {
  say "five daemons (N=3 W=2 R=2) vs OpenDHT with five nodes"
  start_nodes 5
  echo "-- ringkv put through node 1, -c 50"; rk bench --op put -c 50 -n "$N_OPS"
  echo "-- ringkv get through node 1, -c 50"; rk bench --op get -c 50 -n "$N_OPS"
  echo "-- ringkv sequential put / get (-c 1)"; rk bench --op put -c 1 -n 2000; rk bench --op get -c 1 -n 2000 --no-fill
  echo "-- ringkv sequential get with R=1 (as OpenDHT's gets: first answer wins)"; rk bench --op get -c 1 -n 2000 --no-fill --consistency one
  echo "-- lookups: 200 iterative locates through each node, then the mean hops each daemon reports"
  for i in 1 2 3 4 5; do
    for k in $(seq 200); do "$BIN" --data-dir "$WORK/n$i" locate "bench:$k" >/dev/null; done
    "$BIN" --data-dir "$WORK/n$i" status -o json | grep mean_hops
  done
  stop_nodes
  echo "-- OpenDHT, 5 nodes (3 processes), sequential put/get"
  /usr/bin/python3 "$PEERS/opendht_bench.py" 5 1000 --procs
}

# three runs ringkv and etcd side by side: both clusters up at once, and
# ROUNDS rounds (default 3) that alternate the same load on each, so that
# both see the same machine; it prints every run, then the medians and
# the ratios of ringkv to etcd.
three() {
  say "three daemons, N=3 W=2 R=2, sync=true vs a 3-member etcd, 100-byte values"
  start_nodes 3 --sync=true
  start_etcd
  (cd "$PEERS/etcdload" && go build -o "$WORK/etcdload" .)
  rk bench --op put -c 50 -n 20000 >/dev/null # fill ringkv's keyspace
  echo "-- the floor of a sequential request: a round trip to node 1 that does no work"
  rk bench --op ping -c 1 -n 5000 | sed -n 2p
  local out=$WORK/three.jsonl
  for round in $(seq "${ROUNDS:-3}"); do
    for c in 50 1; do
      for op in put get; do
        n=$N_OPS; [ $c = 1 ] && n=5000
        r=$(rk bench --op $op -c $c -n $n --no-fill -o json | tr -d "\n")
        e=$(timeout 600 "$WORK/etcdload" -op $op -c $c -n $((n / 5 * 2)) -json)
        echo "{\"system\":\"ringkv\",\"round\":$round,\"run\":$r}" >>"$out"
        echo "{\"system\":\"etcd\",\"round\":$round,\"run\":$e}" >>"$out"
        echo "round $round $op -c $c: ringkv $r"
        echo "round $round $op -c $c: etcd   $e"
      done
    done
  done
  stop_etcd
  stop_nodes
  python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(system, op, c, field):
    v = [r["run"][field] for r in runs if r["system"] == system and r["run"]["op"] == op
         and r["run"].get("concurrency", r["run"].get("c")) == c]
    return statistics.median(v)
print("\nmedians of %d rounds" % max(r["round"] for r in runs))
print("| | ringkv ops/s | p50 ms | p99 ms | etcd ops/s | p50 ms | p99 ms | ops/s ratio |")
print("|---|---|---|---|---|---|---|---|")
for c in (50, 1):
    for op in ("put", "get"):
        rk = [med("ringkv", op, c, f) for f in ("ops_per_sec", "p50_ms", "p99_ms")]
        et = [med("etcd", op, c, f) for f in ("ops_per_s", "p50_ms", "p99_ms")]
        print("| %s -c %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2fx |" % (op, c, *rk, *et, rk[0] / et[0]))
PY
}

case ${1:-all} in
single) single ;;
five) five ;;
three) three ;;
all) single; five; three ;;
*) echo "usage: $0 single|five|three|all" >&2; exit 2 ;;
esac
