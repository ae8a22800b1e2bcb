#!/usr/bin/env python3
"""First use of imported (bcrypt) keys vs their second use (BLAKE3 path).

    python3 benches/haplo/first_use.py PORT SECRET FIRST COUNT [NATIVE_KEY]

Keys are bulkNNNNNNNNNNNN + SECRET (tests/support/haplo.rs bulk_keys), ids
FIRST..FIRST+COUNT-1, which must never have been used. One kept-alive
HTTP/1.1 connection to 127.0.0.1:PORT; each key is sent twice in a row and
each request is timed (perf_counter around send and full read). With
NATIVE_KEY, the same is done COUNT times with it, for the baseline. Prints
median, p90, p99 (nearest rank) and max in microseconds, and every status
seen (all must be 200).
"""
import base64
import http.client
import statistics
import sys
import time


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def main():
    port, secret, first, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    native = sys.argv[5] if len(sys.argv) > 5 else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = {}

    def once(key):
        auth = "Basic " + base64.b64encode(("haplo:" + key).encode()).decode()
        t = time.perf_counter()
        conn.request("GET", "/api/first-use", headers={"Authorization": auth})
        r = conn.getresponse()
        r.read()
        us = (time.perf_counter() - t) * 1e6
        statuses[r.status] = statuses.get(r.status, 0) + 1
        return us

    series = {"first use (bcrypt)": [], "second use (BLAKE3)": [], "native key": []}
    for i in range(first, first + count):
        key = "bulk%012d%s" % (i, secret)
        series["first use (bcrypt)"].append(once(key))
        series["second use (BLAKE3)"].append(once(key))
        if native:
            series["native key"].append(once(native))
    for name, xs in series.items():
        if xs:
            print("%-22s n=%d median %.0f us  p90 %.0f us  p99 %.0f us  max %.0f us" % (
                name, len(xs), statistics.median(xs), pct(xs, 90), pct(xs, 99), max(xs)))
    print("statuses", statuses)


if __name__ == "__main__":
    main()
