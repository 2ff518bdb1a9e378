#!/usr/bin/env bash
# Fan-out through a 2-node cluster next to a single node, on the same core budget: every
# server process (the Herald nodes and Redis) pinned to CPU 0, herald-bench on CPU 1.
# The cluster run publishes to node 1 and subscribes on node 2, so every delivery crosses
# Redis: the worst path. Loopback only; each run is bounded by herald-bench's own limits.
#
# Usage: bench/cluster.sh [SUBSCRIBERS] [RATE] [EVENTS]     (from the workspace root, after
#        cargo build --release -p herald -p herald-bench)
set -euo pipefail
subs=${1:-1000}
rate=${2:-200}
events=${3:-2000}
bin=target/release
key=bench-cluster-key-0123456789abcdef0123456789
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_node() { # port, data dir, extra args...
  local port=$1 dir=$2
  shift 2
  HERALD_JWT_KEY=$key HERALD_LOG=warn taskset -c 0 "$bin/herald" serve --listen "127.0.0.1:$port" \
    --data-dir "$dir" "$@" >"$dir.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "node on $port did not start" >&2
  exit 1
}

run() { # label, publish port, subscribe port, server pid
  local token
  token=$(HERALD_JWT_KEY=$key "$bin/herald" token --publish '*' --subscribe '*' --ttl 1h)
  echo "== $1"
  taskset -c 1 "$bin/herald-bench" run --subscribers "$subs" --events "$events" --rate "$rate" --publishers 4 --drain 10s \
    --sub-url "http://127.0.0.1:$3/.well-known/mercure?topic=bench-{topic}" \
    --pub-url "http://127.0.0.1:$2/.well-known/mercure" --token "$token" \
    --sub-token "$token" --server-pid "$4" 2>&1 >/dev/null | grep -E "^(events|deliveries|latency|server)" || true
}

start_node 18201 "$work/single"
run "single node" 18201 18201 "${pids[-1]}"

taskset -c 0 redis-server --port 16399 --bind 127.0.0.1 --dir "$work" --appendonly yes \
  --appendfsync always --save "" >"$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.5
start_node 18211 "$work/n1" --redis-url redis://127.0.0.1:16399/
start_node 18212 "$work/n2" --redis-url redis://127.0.0.1:16399/
run "2-node cluster (publish on node 1, subscribe on node 2)" 18211 18212 "${pids[-1]}"
