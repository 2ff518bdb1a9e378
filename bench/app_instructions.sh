#!/usr/bin/env bash
# Instructions a node executes per app change (a todo created over HTTP), counted by
# callgrind, split by thread: the log's writer, the runtime's workers, and the rest. Unlike
# changes/s or CPU time, the count hardly moves with a noisy or shared machine, so it shows
# a cut of a few percent that a wall-clock benchmark cannot tell from noise. It does not
# show what costs time without instructions: waiting on fsync, cache misses, the kernel.
#
# Each binary gets a fresh data dir. It starts once natively to make the admin, sign in
# and create a workspace, then again under callgrind: 200 changes warm it up, the counters
# are zeroed, CHANGES todos are created over CONNECTIONS keep-alive connections (so
# commits batch as they do under load), and the counters are dumped. Loopback only.
#
# Usage: bench/app_instructions.sh NAME=PATH... [-- CHANGES [CONNECTIONS]]
#        e.g. bench/app_instructions.sh before=/tmp/herald-old after=target/release/herald
set -euo pipefail
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
changes=${1:-2000}
connections=${2:-16}
[ ${#bins[@]} -gt 0 ] && [ "$changes" -gt 0 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind: apt-get install -y valgrind" >&2; exit 2; }
port=18311
base=http://127.0.0.1:$port
if curl -s -m 2 -o /dev/null "$base/"; then
  echo "127.0.0.1:$port is taken" >&2
  exit 1
fi
email=admin@bench.example
password=bench-admin-password
flags=(--listen "127.0.0.1:$port" --max-connections-per-ip 100000 --app-change-rate 0
  --workspace-change-rate 1000000/1s --login-ip-rate 0 --login-account-rate 0
  --login-failure-rate 0)
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

wait_up() {
  for _ in $(seq "$1"); do
    kill -0 "$server" 2>/dev/null || break
    curl -sf -m 5 "$base/healthz" >/dev/null && return
    sleep 0.5
  done
  echo "herald did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
}

# Creates $2 todos in workspace $3 with cookie $4 over $1 connections; fails on any answer
# but 201.
post() {
  python3 - "$@" <<'EOF'
import http.client, json, sys, threading
conns, n, ws, cookie, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
failed = []
def run(t, count):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=300)
    for i in range(count):
        body = json.dumps({"title": f"todo {t}-{i}"})
        c.request('POST', f'/api/workspaces/{ws}/todos', body, {
            'content-type': 'application/json', 'cookie': cookie,
            'origin': f'http://127.0.0.1:{port}'})
        r = c.getresponse(); r.read()
        if r.status != 201: failed.append(r.status)
threads = [threading.Thread(target=run, args=(t, n // conns + (t < n % conns)))
           for t in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
if failed: sys.exit(f"{len(failed)} changes failed: {failed[:5]}")
EOF
}

for named in "${bins[@]}"; do
  name=${named%%=*}
  bin=$(realpath "${named#*=}")
  rm -rf "$work/data" "$work"/cg.*
  HERALD_ADMIN_EMAIL=$email HERALD_ADMIN_PASSWORD=$password HERALD_LOG=warn \
    "$bin" serve --data-dir "$work/data" "${flags[@]}" >"$work/server.log" 2>&1 &
  server=$!
  wait_up 100
  cookie=$(curl -sf -D - -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/api/login" |
    sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)
  ws=$(curl -sf -H "cookie: $cookie" -H 'content-type: application/json' -H "origin: $base" \
    -d '{"name":"instructions"}' "$base/api/workspaces" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
  kill "$server"; wait "$server" 2>/dev/null || true
  HERALD_LOG=warn valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
    --callgrind-out-file="$work/cg.out" "$bin" serve --data-dir "$work/data" "${flags[@]}" \
    >"$work/server.log" 2>&1 &
  server=$!
  wait_up 600
  post "$connections" 200 "$ws" "$cookie" "$port"
  callgrind_control -z "$server" >/dev/null 2>&1
  post "$connections" "$changes" "$ws" "$cookie" "$port"
  callgrind_control -d "$server" >/dev/null 2>&1
  sleep 1
  kill "$server"; wait "$server" 2>/dev/null || true
  server=
  # The dump asked for after zeroing is part 1 of each thread (cg.out.1-NN); the one
  # written at exit has no part number.
  writer=0 runtime=0 other=0
  for dump in "$work"/cg.out.1-*; do
    count=$(sed -n 's/^summary: //p' "$dump")
    if grep -q 'log::writer::serve' "$dump"; then
      writer=$((writer + count))
    elif grep -q 'multi_thread::worker::run' "$dump"; then
      runtime=$((runtime + count))
    else
      other=$((other + count))
    fi
  done
  if [ "$writer" -eq 0 ] || [ "$runtime" -eq 0 ]; then
    echo "$name: no thread found running the log's writer or the runtime's workers" >&2
    exit 1
  fi
  total=$((writer + runtime + other))
  printf '%s: instructions per change %d (log writer %d, runtime %d, other %d)\n' "$name" \
    $((total / changes)) $((writer / changes)) $((runtime / changes)) $((other / changes))
done
