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
  [ -d "$WORK/etcd" ] && "$PEERS/etcd-cluster.sh" stop "$WORK/etcd" >/dev/null 2>&1 || true
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

three() {
  say "three daemons, N=3 W=2 R=2, sync=true vs a 3-member etcd, 100-byte values"
  start_nodes 3 --sync=true
  for c in 50 1; do
    n=$N_OPS; [ $c = 1 ] && n=5000
    echo "-- ringkv put -c $c"; rk bench --op put -c $c -n $n --value-size 100
    fill=""; [ $c = 1 ] && fill=--no-fill
    echo "-- ringkv get -c $c"; rk bench --op get -c $c -n $n --value-size 100 $fill
  done
  stop_nodes
  "$PEERS/etcd-cluster.sh" start "$WORK/etcd" >/dev/null
  for c in 50 1; do
    n=20000; [ $c = 1 ] && n=5000
    echo "-- etcd put -c $c"; (cd "$PEERS/etcdload" && go run . -op put -c $c -n $n)
    echo "-- etcd get (linearizable) -c $c"; (cd "$PEERS/etcdload" && go run . -op get -c $c -n $n)
  done
  "$PEERS/etcd-cluster.sh" stop "$WORK/etcd" >/dev/null
}

case ${1:-all} in
single) single ;;
five) five ;;
three) three ;;
all) single; five; three ;;
*) echo "usage: $0 single|five|three|all" >&2; exit 2 ;;
esac
