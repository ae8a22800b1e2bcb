#!/usr/bin/env python3
"""HTTP/2 and HTTP/1.1 probes against a TLS keygate (issue 14).

Needs Python's `hyperframe` and `hpack` (pip install h2 brings both). Frames
are written by hand, not through an HTTP/2 client library, so a probe can
send what a well-behaved client would not (a header block that never ends,
`:authority` and `host` disagreeing, resets in any pattern). Loopback only:
the host is always 127.0.0.1. benches/h2probe/run.sh starts everything and
runs these; by hand:

    probe.py reset-batch  --port P --key K [--batch 100 --wait-ms 5 --secs 11] [--connections N]
    probe.py rapid-reset  --port P --key K [--streams 5000 --secs 11]
    probe.py idle         --port P [--secs 30] [--client-ping 1]
    probe.py open-headers --port P [--secs 30]
    probe.py sweep        --port P --key K --trusted-src 127.0.0.1 --untrusted-src 127.0.0.2 > sweep.jsonl
    probe.py table        --sweep sweep.jsonl --access ACCESS_LOG   (sweep as text)

Each prints one JSON object per probe on stdout: what was sent, every
GOAWAY (time since the connection was ready, error code and name, last
stream id), when the connection closed, and response statuses.
"""
import argparse
import base64
import json
import select
import socket
import ssl
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

HOST = "127.0.0.1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERRORS = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}
BIG_WINDOW = 1 << 30


def basic(key):
    return "Basic " + base64.b64encode(("haplo:" + key).encode()).decode()


def tls_socket(port, alpn, src=None, timeout=5.0):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection((HOST, port), timeout=timeout,
                                   source_address=(src, 0) if src else None)
    # Without this, Nagle holds a batch of frames behind the previous small
    # write until the server's delayed ACK (~40 ms): HEADERS and their
    # RST_STREAMs would then arrive together.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    return s


class H2:
    """One HTTP/2 connection, frames by hand."""

    def __init__(self, port, src=None):
        self.sock = tls_socket(port, ["h2"], src)
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = b""
        self.out = []
        self.next_id = 1
        self.goaways = []
        self.closed_at = None
        self.close_reason = None
        self.pings_answered = 0
        self.server_settings = {}
        self.statuses = {}
        self.responses = {}  # sid -> {"status", "headers", "body"}
        self.rst_from_server = {}
        self._hdr_block = None
        self.t0 = time.monotonic()
        self.write(PREFACE)
        s = SettingsFrame(0)
        s.settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: BIG_WINDOW}
        self.frame(s)
        w = WindowUpdateFrame(0)
        w.window_increment = BIG_WINDOW
        self.frame(w)
        self.flush()
        self.poll(0.5, until=lambda: bool(self.server_settings))
        self.t0 = time.monotonic()

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def write(self, data):
        self.out.append(data)

    def frame(self, f):
        self.out.append(f.serialize())

    def flush(self):
        if self.out and self.closed_at is None:
            data = b"".join(self.out)
            self.out = []
            try:
                self.sock.setblocking(True)
                self.sock.settimeout(10)
                self.sock.sendall(data)
            except (OSError, ssl.SSLError) as e:
                # Read what the server said before it closed (a GOAWAY).
                self._drain()
                self._closed("send: %s" % e)
        self.out = []

    def _drain(self):
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                self.buf += data
        except (OSError, ssl.SSLError):
            pass
        try:
            self._parse()
        except Exception:  # a half frame at the end: ignore
            pass

    def new_stream(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def headers(self, sid, headers, end_stream=True, end_headers=True):
        block = self.enc.encode(headers)
        f = HeadersFrame(sid, block)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        self.frame(f)

    def rst(self, sid, code=8):
        f = RstStreamFrame(sid)
        f.error_code = code
        self.frame(f)

    def ping(self, data=b"probe..."):
        f = PingFrame(0)
        f.opaque_data = data
        self.frame(f)

    def _closed(self, why):
        if self.closed_at is None:
            self.closed_at = self.now()
            self.close_reason = why

    def poll(self, secs, until=None):
        """Reads and handles frames for up to `secs` (or until `until()`)."""
        deadline = time.monotonic() + secs
        while self.closed_at is None:
            if until and until():
                return
            left = deadline - time.monotonic()
            if left <= 0 and not self.sock.pending():
                return
            if not self.sock.pending():
                r, _, _ = select.select([self.sock], [], [], max(left, 0))
                if not r:
                    return
            try:
                self.sock.setblocking(False)
                data = self.sock.recv(1 << 16)
            except ssl.SSLWantReadError:
                continue
            except (OSError, ssl.SSLError) as e:
                self._closed("recv: %s" % e)
                return
            if not data:
                self._closed("eof")
                return
            self.buf += data
            self._parse()
            self.flush()

    def _parse(self):
        while len(self.buf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            self._handle(f)

    def _handle(self, f):
        if isinstance(f, SettingsFrame):
            if "ACK" not in f.flags:
                self.server_settings.update(f.settings)
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                self.frame(ack)
        elif isinstance(f, PingFrame):
            if "ACK" not in f.flags:
                ack = PingFrame(0)
                ack.flags.add("ACK")
                ack.opaque_data = f.opaque_data
                self.frame(ack)
                self.pings_answered += 1
        elif isinstance(f, GoAwayFrame):
            self.goaways.append({
                "at_s": self.now(), "code": f.error_code,
                "name": ERRORS.get(f.error_code, "?"), "last_stream_id": f.last_stream_id,
                "debug": f.additional_data.decode("latin-1")[:200],
            })
        elif isinstance(f, (HeadersFrame, ContinuationFrame)):
            if isinstance(f, HeadersFrame):
                self._hdr_block = (f.stream_id, f.data, "END_STREAM" in f.flags)
            else:
                sid, data, es = self._hdr_block
                self._hdr_block = (sid, data + f.data, es)
            if "END_HEADERS" in f.flags:
                sid, data, es = self._hdr_block
                hdrs = self.dec.decode(data)
                r = self.responses.setdefault(sid, {"status": None, "headers": [], "body": b""})
                for k, v in hdrs:
                    if k == ":status" and r["status"] is None:
                        r["status"] = int(v)
                        self.statuses[v] = self.statuses.get(v, 0) + 1
                    else:
                        r["headers"].append((k, v))
        elif isinstance(f, DataFrame):
            r = self.responses.setdefault(f.stream_id, {"status": None, "headers": [], "body": b""})
            if len(r["body"]) < 65536:
                r["body"] += f.data
            if f.flow_controlled_length:
                for sid in (0, f.stream_id):
                    w = WindowUpdateFrame(sid)
                    w.window_increment = f.flow_controlled_length
                    self.frame(w)
        elif isinstance(f, RstStreamFrame):
            name = ERRORS.get(f.error_code, str(f.error_code))
            self.rst_from_server[name] = self.rst_from_server.get(name, 0) + 1

    def summary(self):
        return {
            "goaways": self.goaways, "closed_at_s": self.closed_at,
            "close_reason": self.close_reason, "statuses": self.statuses,
            "server_rst": self.rst_from_server, "pings_answered": self.pings_answered,
            "server_settings": {str(k): v for k, v in self.server_settings.items()},
        }


def request_headers(key, path="/api/probe", authority="localhost"):
    return [(":method", "GET"), (":scheme", "https"), (":authority", authority),
            (":path", path), ("authorization", basic(key))]


def cmd_reset_batch(a):
    if a.connections > 1:
        return reconnecting(a)
    c = H2(a.port)
    start = time.monotonic()
    batches = streams = 0
    while time.monotonic() - start < a.secs and c.closed_at is None:
        ids = []
        for _ in range(a.batch):
            sid = c.new_stream()
            c.headers(sid, request_headers(a.key, "/api/reset-batch/%d" % sid))
            ids.append(sid)
        c.flush()
        streams += len(ids)
        c.poll(a.wait_ms / 1000)
        for sid in ids:
            c.rst(sid)
        c.flush()
        batches += 1
        c.poll(0.0005)
    c.poll(2.5)  # late frames: GOAWAY, close
    out = {"probe": "reset-batch", "batch": a.batch, "wait_ms": a.wait_ms,
           "batches_sent": batches, "streams_sent": streams,
           "ran_s": round(time.monotonic() - start, 2)}
    out.update(c.summary())
    print(json.dumps(out))


def reconnecting(a):
    """The batch-then-reset pattern on up to `connections` connections one
    after another (a new one as soon as the last got GOAWAY), within secs."""
    start = time.monotonic()
    conns = streams = 0
    codes = {}
    while time.monotonic() - start < a.secs and conns < a.connections:
        c = H2(a.port)
        conns += 1
        while c.closed_at is None and not c.goaways and time.monotonic() - start < a.secs:
            ids = []
            for _ in range(a.batch):
                sid = c.new_stream()
                c.headers(sid, request_headers(a.key, "/api/reconnect/%d/%d" % (conns, sid)))
                ids.append(sid)
            c.flush()
            streams += len(ids)
            c.poll(a.wait_ms / 1000)
            for sid in ids:
                c.rst(sid)
            c.flush()
            c.poll(0.0005)
        for g in c.goaways:
            codes[g["name"]] = codes.get(g["name"], 0) + 1
        c.sock.close()
    print(json.dumps({"probe": "reset-batch, reconnecting", "batch": a.batch, "wait_ms": a.wait_ms,
                      "connections": conns, "streams_sent": streams, "goaways": codes,
                      "ran_s": round(time.monotonic() - start, 2)}))


def cmd_rapid_reset(a):
    c = H2(a.port)
    start = time.monotonic()
    streams = 0
    while (time.monotonic() - start < a.secs and streams < a.streams
           and c.closed_at is None):
        for _ in range(50):
            sid = c.new_stream()
            c.headers(sid, request_headers(a.key, "/api/rapid/%d" % sid))
            c.rst(sid)
            streams += 1
        c.flush()
        c.poll(0)
    c.poll(2.5)
    out = {"probe": "rapid-reset", "streams_sent": streams,
           "ran_s": round(time.monotonic() - start, 2)}
    out.update(c.summary())
    print(json.dumps(out))


def wait_for_close(c, secs, ping_every):
    start = time.monotonic()
    last_ping = start
    while c.closed_at is None and time.monotonic() - start < secs:
        c.poll(0.1)
        if ping_every and time.monotonic() - last_ping >= ping_every:
            c.ping()
            c.flush()
            last_ping = time.monotonic()


def cmd_idle(a):
    c = H2(a.port)
    wait_for_close(c, a.secs, a.client_ping)
    out = {"probe": "idle", "client_ping_every_s": a.client_ping, "limit_s": a.secs}
    out.update(c.summary())
    print(json.dumps(out))


def cmd_open_headers(a):
    c = H2(a.port)
    sid = c.new_stream()
    # A header block that never ends: no END_HEADERS, no CONTINUATION.
    c.headers(sid, request_headers(a.key or "x" * 44), end_stream=True, end_headers=False)
    c.flush()
    wait_for_close(c, a.secs, a.client_ping)
    out = {"probe": "open-headers", "client_ping_every_s": a.client_ping, "limit_s": a.secs}
    out.update(c.summary())
    print(json.dumps(out))


# ------------------------------------------------------------------ sweep
def h1(port, raw, src=None, timeout=5.0):
    """One raw HTTP/1.1 request over TLS; returns (status, headers, body)."""
    s = tls_socket(port, ["http/1.1"], src, timeout)
    s.settimeout(timeout)
    s.sendall(raw)
    data = b""
    status, headers, body = None, [], b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines and lines[0].startswith("HTTP/"):
            status = int(lines[0].split(" ")[1])
        headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
        cl = [int(v) for k, v in headers if k.lower() == "content-length"]
        body = rest
        if cl:
            while len(body) < cl[0]:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        elif status and status != 101:
            while not body.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
    except (socket.timeout, ssl.SSLError, OSError) as e:
        body += ("<%s>" % e).encode()
    s.close()
    return status, headers, body


def h2_one(port, headers, src=None, secs=5.0):
    c = H2(port, src)
    sid = c.new_stream()
    c.headers(sid, headers)
    c.flush()
    c.poll(secs, until=lambda: sid in c.responses and c.responses[sid]["status"]
           and (len(c.responses[sid]["body"]) > 0 or c.closed_at))
    c.poll(0.2)
    r = c.responses.get(sid, {"status": None, "headers": [], "body": b""})
    return r["status"], r["headers"], r["body"], c.summary()


def upstream_view(body):
    """The slow upstream's echo: the request line and headers it got."""
    try:
        j = json.loads(body)
    except ValueError:
        return None
    if "headers" not in j:
        return None
    keep = []
    for h in j["headers"]:
        k = h.split(":", 1)[0].lower()
        if k in ("x-haplo-user", "x-haplo-api-key-id", "content-length"):
            continue
        keep.append(h)
    return {"line": j["line"], "headers": keep}


def refusal(body):
    try:
        j = json.loads(body)
        return j.get("kind")
    except ValueError:
        return body[:80].decode("latin-1")


def cmd_sweep(a):
    auth = basic(a.key)
    results = []

    def h1case(name, head_lines, src=None, path=None):
        path = path or "/api/sweep/%d" % len(results)
        raw = ("GET %s HTTP/1.1\r\n" % path + "".join(l + "\r\n" for l in head_lines)
               + "Authorization: %s\r\n\r\n" % auth).encode("latin-1")
        st, hd, body = h1(a.port, raw, src)
        view = upstream_view(body)
        results.append({"case": name, "proto": "h1", "src": src or "127.0.0.1",
                        "sent": head_lines, "status": st,
                        "keygate": None if view else refusal(body),
                        "upstream_got": view,
                        "resp_headers": [h for h in hd if h[0].lower() in ("connection", "upgrade")]})

    def h2case(name, extra, authority="localhost", src=None, pseudo=None):
        hdrs = pseudo or [(":method", "GET"), (":scheme", "https"),
                          (":authority", authority), (":path", "/api/sweep/%d" % len(results))]
        hdrs = hdrs + extra + [("authorization", auth)]
        st, hd, body, summ = h2_one(a.port, hdrs, src)
        view = upstream_view(body)
        results.append({"case": name, "proto": "h2", "src": src or "127.0.0.1",
                        "sent": [list(h) for h in hdrs if h[0] != "authorization"],
                        "status": st, "keygate": None if view else refusal(body),
                        "upstream_got": view, "goaways": summ["goaways"],
                        "server_rst": summ["server_rst"]})

    hosts = ["a..b", "[::1]:80", "xn--bcher-kva.example", "host:0", "host:65536",
             "[fe80::1%25eth0]", "[fe80::1%eth0]", "example.com.", "EXAMPLE.COM",
             "Example.Com:8080", "host:", "host:08080", ":80", "host:+80", "[::1]",
             "[v1.x]", "1.2.3.4.", "user@host", "host/path", "host name", "",
             "a" * 300, "b\xe4cher.example", "host:80:80", "[::ffff:127.0.0.1]",
             "-leading.example", "under_score.example", "ex%41mple.com", "127.1",
             "0x7f.0.0.1", "1.2.3.256", "::1", "[::1]:", "localhost:8080 "]
    for h in hosts:
        h1case("Host: %r" % h, ["Host: " + h])
    h1case("two Host headers", ["Host: a.example", "Host: b.example"])
    h1case("no Host (HTTP/1.1)", [])
    h1case("absolute-form target vs Host",
           ["Host: other.example"], path="https://localhost/api/sweep")
    for h in ["a..b", "[::1]:80", "host:0", "host:65536", "[fe80::1%25eth0]",
              "example.com.", "EXAMPLE.COM", "user@host", ""]:
        h2case(":authority %r" % h, [], authority=h)
    h2case(":authority vs host disagree", [("host", "evil.example")], authority="good.example")
    h2case("host only, no :authority", [("host", "hostonly.example")],
           pseudo=[(":method", "GET"), (":scheme", "https"), (":path", "/api/sweep")])
    h2case("cookie crumbs with empty ones",
           [("cookie", "a=1"), ("cookie", ""), ("cookie", "b=2"), ("cookie", ""),
            ("cookie", "c=3")])
    h2case("cookie only empty crumbs", [("cookie", ""), ("cookie", "")])
    h2case("cookie '; ' inside a crumb", [("cookie", "a=1; "), ("cookie", "; b=2")])
    h2case("h2 X-Real_IP and X_Forwarded_For",
           [("x-real_ip", "6.6.6.6"), ("x_forwarded_for", "6.6.6.7")], src=a.untrusted_src)
    h2case("h2 te: trailers", [("te", "trailers")])
    h2case("h2 connection-specific header (connection: close)", [("connection", "close")])
    h2case("h2 upgrade header", [("upgrade", "websocket")])

    # Header spellings, from an untrusted and from a trusted peer.
    for src, tag in ((a.untrusted_src, "untrusted"), (a.trusted_src, "trusted")):
        h1case("X-Real_IP (%s)" % tag, ["Host: localhost", "X-Real_IP: 6.6.6.6"], src)
        h1case("X-Real-IP (%s)" % tag, ["Host: localhost", "X-Real-IP: 6.6.6.6"], src)
        h1case("X-Forwarded-For twice (%s)" % tag,
               ["Host: localhost", "X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 7.7.7.7"], src)
        h1case("Forwarded (%s)" % tag,
               ["Host: localhost", "Forwarded: for=6.6.6.6;proto=http;host=evil.example"], src)
        h1case("X-Forwarded-Host + X_Forwarded_Host (%s)" % tag,
               ["Host: localhost", "X-Forwarded-Host: evil.example",
                "X_Forwarded_Host: evil2.example"], src)
        h1case("X-Haplo_User spoof (%s)" % tag,
               ["Host: localhost", "X-Haplo_User: 0", "x-haplo-api-key-id: spoof"], src)
        h1case("X-Forwarded-Proto: http (%s)" % tag,
               ["Host: localhost", "X-Forwarded-Proto: http"], src)
    # Upgrades and Connection.
    ws = ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    h1case("Upgrade: websocket, h2c",
           ["Host: localhost", "Connection: Upgrade", "Upgrade: websocket, h2c"] + ws)
    h1case("Upgrade: H2C", ["Host: localhost", "Connection: Upgrade, HTTP2-Settings",
                            "Upgrade: H2C", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"])
    h1case("Upgrade: h2c without Connection: Upgrade",
           ["Host: localhost", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"])
    h1case("Connection: Upgrade, HTTP2-Settings without Upgrade",
           ["Host: localhost", "Connection: Upgrade, HTTP2-Settings",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"])
    h1case("Connection names X-Forwarded-For (hop-by-hop strip)",
           ["Host: localhost", "Connection: X-Forwarded-For, X-Haplo-User"], a.trusted_src)
    h1case("Connection: close, Keep-Alive + TE: trailers",
           ["Host: localhost", "Connection: close, Keep-Alive", "Keep-Alive: 5", "TE: trailers"])
    h1case("Upgrade: websocket (upstream is not a WebSocket server)",
           ["Host: localhost", "Connection: Upgrade", "Upgrade: websocket"] + ws)
    for r in results:
        print(json.dumps(r))


def cmd_table(a):
    """Sweep JSON lines (file a.sweep) as text, with the client address and
    outcome keygate logged for each (its access log, file a.access)."""
    logged = {}
    if a.access:
        for line in open(a.access):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            logged[j.get("path")] = "%s %s" % (j.get("client"), j.get("outcome"))
    for line in open(a.sweep):
        if not line.startswith('{"case"'):
            continue
        d = json.loads(line)
        up = d["upstream_got"]
        path = up["line"].split(" ")[1] if up else None
        extra = ""
        if d.get("server_rst"):
            extra += " stream reset %s" % d["server_rst"]
        if d.get("resp_headers"):
            extra += " response %s" % d["resp_headers"]
        print("[%s from %s] %s -> %s %s%s%s" % (
            d["proto"], d["src"], d["case"][:80], d["status"], d["keygate"] or "",
            extra, ("  (logged client %s)" % logged[path]) if path in logged else ""))
        if up:
            print("      upstream got: %s | %s" % (up["line"], " ; ".join(up["headers"])[:400]))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("reset-batch", "rapid-reset", "idle", "open-headers", "sweep"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--key", default="")
        s.add_argument("--secs", type=float, default=11 if "reset" in name else 30)
        s.add_argument("--batch", type=int, default=100)
        s.add_argument("--wait-ms", type=float, default=5)
        s.add_argument("--streams", type=int, default=5000)
        s.add_argument("--client-ping", type=float, default=0)
        s.add_argument("--connections", type=int, default=1)
        s.add_argument("--trusted-src", default="127.0.0.1")
        s.add_argument("--untrusted-src", default="127.0.0.2")
    t = sub.add_parser("table")
    t.add_argument("--sweep", required=True)
    t.add_argument("--access", default="")
    a = p.parse_args()
    {"reset-batch": cmd_reset_batch, "rapid-reset": cmd_rapid_reset, "idle": cmd_idle,
     "open-headers": cmd_open_headers, "sweep": cmd_sweep, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
