-- wrk script for `cargo xtask bench app`: every request creates a todo as the signed-in
-- admin, POST /api/workspaces/<ws>/todos with a JSON title. Takes the workspace id and the
-- session cookie from the environment (HERALD_BENCH_WS, HERALD_BENCH_COOKIE). With
-- HERALD_BENCH_PORTS (comma-separated ports of 127.0.0.1), wrk's threads go to those nodes
-- round-robin, each thread with its share of the connections. Answers other than 2xx are
-- counted as errors; `done` prints one JSON line, prefixed with `RESULT `.

local ws = os.getenv("HERALD_BENCH_WS")
local cookie = os.getenv("HERALD_BENCH_COOKIE")
if not ws or not cookie then
  error("set HERALD_BENCH_WS and HERALD_BENCH_COOKIE")
end

wrk.method = "POST"
wrk.path = "/api/workspaces/" .. ws .. "/todos"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = cookie
wrk.body = '{"title":"a todo from wrk"}'

local ports = {}
for port in string.gmatch(os.getenv("HERALD_BENCH_PORTS") or "", "%d+") do
  table.insert(ports, port)
end

local threads = {}

function setup(thread)
  if #ports > 0 then
    local port = ports[(#threads % #ports) + 1]
    thread.addr = wrk.lookup("127.0.0.1", port)[1]
  end
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  first_status = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_status == 0 then
      first_status = status
    end
  end
end

function done(summary, latency, requests)
  local errors = 0
  local status = 0
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("non2xx")
    local s = thread:get("first_status")
    if s ~= 0 then
      status = s
    end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"first_error_status":%d,' ..
    '"socket_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, errors, status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
