"""The app's path, measured: REST change -> event on another user's stream.

Starts nothing itself: point it at a `herald serve` on loopback that was started with
HERALD_ADMIN_EMAIL=admin@example.com HERALD_ADMIN_PASSWORD=admin-password-1 on a fresh data
directory. It creates a member B, opens B's /api/events stream, then has the admin create N
todos from C concurrent connections, and prints:

- POST -> 201 latency (the change committed, its event stored in the log),
- POST sent -> `todos:created` read on B's stream,
- changes per second, and how many events B received (must be all of them, in order per
  connection).

Usage: python3 bench/app_latency.py HOST PORT N [C]   (loopback only; bounded by N)
"""

import http.client
import json
import sys
import threading
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 1
if not (host.startswith("127.") or host in ("localhost", "::1")):
    sys.exit("loopback only")


def call(cookie, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection(host, port, timeout=30)
    headers = {"content-type": "application/json"}
    if cookie:
        headers["cookie"] = cookie
    c.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = c.getresponse()
    data = r.read()
    return r, (json.loads(data) if data else None)


def login(email, password):
    r, _ = call(None, "POST", "/api/login", {"email": email, "password": password})
    assert r.status == 200, f"login {email}: {r.status}"
    return r.getheader("set-cookie").split(";")[0]


admin = login("admin@example.com", "admin-password-1")
_, b = call(admin, "POST", "/api/users",
            {"email": "b@example.com", "name": "B", "password": "bbbbbbbb", "role": "member"})
ws = call(admin, "GET", "/api/workspaces")[1]["items"][0]["id"]
call(admin, "POST", f"/api/workspaces/{ws}/members", {"userId": b["id"], "role": "member"})
bob = login("b@example.com", "bbbbbbbb")

received = {}
order = []
connected = threading.Event()


def read_stream():
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/api/events", headers={"cookie": bob})
    r = c.getresponse()
    while len(received) < n:
        line = r.fp.readline()
        if line.startswith(b"event: connected"):
            connected.set()
        if line.startswith(b"data: ") and b'"todos:created"' in line:
            title = json.loads(line[6:])["data"]["title"]
            received[title] = time.perf_counter()
            order.append(title)


threading.Thread(target=read_stream, daemon=True).start()
connected.wait(10)
sent, rest = {}, []
lock = threading.Lock()


def writer(k):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(k, n, concurrency):
        title = f"c{k}-{i}"
        t0 = time.perf_counter()
        r, _ = call(admin, "POST", f"/api/workspaces/{ws}/todos", {"title": title}, conn)
        assert r.status == 201, r.status
        with lock:
            sent[title] = t0
            rest.append((time.perf_counter() - t0) * 1000)


started = time.perf_counter()
threads = [threading.Thread(target=writer, args=(k,)) for k in range(concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - started
deadline = time.time() + 10
while len(received) < n and time.time() < deadline:
    time.sleep(0.01)

delivery = sorted((received[t] - sent[t]) * 1000 for t in sent if t in received)
rest.sort()


def q(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


in_order = all(
    [t for t in order if t.startswith(f"c{k}-")]
    == sorted((t for t in order if t.startswith(f"c{k}-")), key=lambda t: int(t.split("-")[1]))
    for k in range(concurrency)
)
print(
    f"{n} creates over {concurrency} connection(s): {n / elapsed:.0f} changes/s; "
    f"POST->201 p50 {q(rest, .5):.2f} ms p99 {q(rest, .99):.2f} ms; "
    f"POST->event on B's stream p50 {q(delivery, .5):.2f} ms p99 {q(delivery, .99):.2f} ms; "
    f"B received {len(received)}/{n}, per-connection order kept: {in_order}"
)
