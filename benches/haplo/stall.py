#!/usr/bin/env python3
"""Request latency on one kept-alive connection, to see event-loop stalls.

    python3 benches/haplo/stall.py PORT KEY SECS [GAP_MS]

Sends GET /api/stall with KEY to 127.0.0.1:PORT, one request every GAP_MS
(default 5) for SECS seconds, and prints how many requests, the median,
p99 and max latency, and each request slower than 50 ms with its time
offset (benches/haplo.sh runs it across a Haplo follow change).
"""
import base64
import http.client
import statistics
import sys
import time

port, key, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
gap = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.005
auth = "Basic " + base64.b64encode(("haplo:" + key).encode()).decode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
lat, slow, statuses = [], [], {}
t0 = time.monotonic()
while time.monotonic() - t0 < secs:
    t = time.perf_counter()
    conn.request("GET", "/api/stall", headers={"Authorization": auth})
    r = conn.getresponse()
    r.read()
    ms = (time.perf_counter() - t) * 1000
    statuses[r.status] = statuses.get(r.status, 0) + 1
    lat.append(ms)
    if ms > 50:
        slow.append("%.1f ms at +%.2f s" % (ms, time.monotonic() - t0))
    time.sleep(gap)
lat.sort()
print("stall probe: n=%d median %.2f ms p99 %.2f ms max %.1f ms statuses %s; over 50 ms: %s" % (
    len(lat), statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1], statuses,
    ", ".join(slow) or "none"))
