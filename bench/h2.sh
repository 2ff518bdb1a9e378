#!/usr/bin/env bash
# What an HTTP/2 stream costs Herald, next to the direct HTTP/1 path, in one run: idle
# memory per stream and per connection, and fan-out throughput and CPU per delivery. Each
# measurement gets a fresh server (so no run reuses memory an earlier one freed), pinned to
# CPU 0; herald-bench runs on CPU 1 with one runtime thread. Loopback only; every run is
# bounded by herald-bench's own limits.
#
# Usage: bench/h2.sh [ROUNDS]     (from the workspace root, after
#        cargo build --release -p herald -p herald-bench)
# ROUNDS (default 2) repeats the whole set, alternating the kinds within each round.
set -euo pipefail
rounds=${1:-2}
bin=${HERALD_BIN_DIR:-target/release}
key=bench-h2-key-not-a-secret-0123456789abcdef
port=18301
base=http://127.0.0.1:$port/.well-known/mercure
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  rm -rf "$work/data"
  HERALD_LOG=warn taskset -c 0 "$bin/herald" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --jwt-key "$key" --anonymous --durability normal --max-connections-per-ip 100000 \
    >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "herald did not start" >&2
  exit 1
}

stop() {
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
}

bench() { # label, herald-bench arguments...
  local label=$1
  shift
  start
  sleep 1 # let the server's start-up allocations settle before "RSS before"
  taskset -c 1 "$bin/herald-bench" --threads 1 "$@" --server-pid "$server" --source-ips 4 \
    2>"$work/last.err" | sed "s/^/$label\t/" >>"$work/results.tsv" || { cat "$work/last.err" >&2; exit 1; }
  stop
}

token=$("$bin/herald" token --publish '*' --ttl 1h --jwt-key "$key")
idle=(idle --hold 3s --sub-url "$base?topic=bench")
fanout=(run --sub-url "$base?topic=bench" --pub-url "$base" --pub-topic bench --token "$token"
  --subscribers 1000 --events 2000 --rate 200 --publishers 4 --drain 10s --duration-limit 90s)
for _ in $(seq "$rounds"); do
  bench "idle h1 5000" "${idle[@]}" --subscribers 5000
  bench "idle h2 5000x1" "${idle[@]}" --subscribers 5000 --http2
  bench "idle h2 100x1" "${idle[@]}" --subscribers 100 --http2
  bench "idle h2 100x100" "${idle[@]}" --subscribers 10000 --http2 --streams-per-connection 100
  bench "run h1 1000" "${fanout[@]}"
  bench "run h2 10x100" "${fanout[@]}" --http2 --streams-per-connection 100
  bench "run h2 1000x1" "${fanout[@]}" --http2
done

# Request rate of GET /healthz (hyper and the router on both protocols), when the tools are
# installed (apt-get install nghttp2-client wrk): h2load speaks h2c with prior knowledge.
if command -v h2load >/dev/null && command -v wrk >/dev/null; then
  start
  for _ in $(seq "$rounds"); do
    taskset -c 1 wrk -t1 -c100 -d10s "http://127.0.0.1:$port/healthz" | sed -n 's/^Requests\/sec: *//p' |
      sed 's/^/wrk http\/1.1, 100 connections: requests\/s /' >>"$work/requests.txt"
    taskset -c 1 h2load -t1 -c10 -m10 -D10 "http://127.0.0.1:$port/healthz" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' |
      sed 's/^/h2load h2c, 10 connections x 10 streams: requests\/s /' >>"$work/requests.txt"
  done
  stop
fi

python3 - "$work/results.tsv" <<'EOF'
import json, sys, statistics as st
runs = {}
for line in open(sys.argv[1]):
    label, report = line.rstrip("\n").split("\t", 1)
    runs.setdefault(label, []).append(json.loads(report))

def delta(r):
    s = r["server"]
    return s["rss_idle"] - s["rss_before"]

def per(label, f):
    return [f(r) for r in runs.get(label, [])]

def fmt(xs, unit=""):
    return ", ".join(f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:.2f}{unit}" for x in xs)

print("idle memory (RSS delta per subscriber or stream, bytes; one value per round)")
for label in ["idle h1 5000", "idle h2 5000x1", "idle h2 100x1", "idle h2 100x100"]:
    rs = runs.get(label, [])
    print(f"  {label:18} connected {[r['subscribers']['connected'] for r in rs]} "
          f"connections {[r['subscribers']['connections'] for r in rs]} "
          f"RSS delta MiB {[round(delta(r) / 2**20, 2) for r in rs]} "
          f"per subscriber {fmt(per(label, lambda r: r['server']['rss_per_conn_bytes']))}")
h1 = per("idle h1 5000", lambda r: delta(r) / r["subscribers"]["connected"])
h2c = per("idle h2 5000x1", lambda r: delta(r) / r["subscribers"]["connected"])
one = per("idle h2 100x1", delta)
many = per("idle h2 100x100", lambda r: (r, delta(r)))
streams = [(d - o) / (r["subscribers"]["connected"] - 100) for (r, d), o in zip(many, one)]
print(f"  per direct HTTP/1 connection: {fmt(h1)} B (mean {st.mean(h1) / 1024:.2f} KiB)")
print(f"  per HTTP/2 connection with one stream: {fmt(h2c)} B (mean {st.mean(h2c) / 1024:.2f} KiB, "
      f"{st.mean(h2c) / st.mean(h1):.2f}x HTTP/1)")
print(f"  per extra HTTP/2 stream, (100x100 - 100x1) / 9,900: {fmt(streams)} B "
      f"(mean {st.mean(streams) / 1024:.2f} KiB; goal <= 4 KiB: "
      f"{'met' if st.mean(streams) <= 4096 else 'not met'})")

print("fan-out: 1,000 subscribers on one topic, 200 events/s x 2,000 events (200,000 deliveries/s offered)")
base = None
for label in ["run h1 1000", "run h2 10x100", "run h2 1000x1"]:
    rs = runs.get(label, [])
    dps = [r["deliveries"]["per_sec"] for r in rs]
    us = [r["server"]["cpu_s_per_million"] for r in rs]
    p99 = [r["latency_us"]["from_send"]["p99"] / 1000 for r in rs]
    lost = [r["deliveries"]["lost"] for r in rs]
    client = [r["bench_cpu_s"] / r["deliveries"]["window_s"] for r in rs]
    if base is None:
        base = (st.mean(dps), st.mean(us))
    print(f"  {label:14} deliveries/s {fmt(dps)}; server CPU us/delivery {fmt(us)}; "
          f"p99 from send ms {fmt(p99)}; lost {lost}; herald-bench busy {fmt([c * 100 for c in client], '%')}; "
          f"ratio to h1: {st.mean(dps) / base[0]:.2f}x deliveries/s, {st.mean(us) / base[1]:.2f}x CPU/delivery")
EOF
[ -f "$work/requests.txt" ] && cat "$work/requests.txt"
true
