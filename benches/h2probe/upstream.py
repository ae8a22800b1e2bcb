#!/usr/bin/env python3
"""A deliberately slow HTTP/1.1 upstream for benches/h2probe (issue 14).

    python3 benches/h2probe/upstream.py PORT [SLEEP_SECS]

Listens on 127.0.0.1:PORT only. Every request (keep-alive, Content-Length
or chunked bodies are read and dropped) waits SLEEP_SECS (default 2) and is
answered `200` with a JSON body: the request line and the header lines
exactly as received (order, case, duplicates), so a probe can see what
keygate forwarded. It counts requests in flight and keeps the maximum.

Control paths (send them straight to the upstream, not through keygate):
    GET /__stats   -> {"total", "in_flight", "max_in_flight", "cancelled"}
    GET /__reset   -> zero the counters (in_flight is left as it is)
A request whose connection closes during the sleep still counts until its
sleep ends (it was work the application did), and is also counted in
"cancelled".
"""
import asyncio
import json
import sys

STATS = {"total": 0, "in_flight": 0, "max_in_flight": 0, "cancelled": 0}


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[:-2]
    return lines[0], lines[1:]


async def drain_body(reader, headers):
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == "content-length"]
    if te and "chunked" in te[-1].lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2) if size else None
            if size == 0:
                # trailers until an empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
    elif cl:
        await reader.readexactly(int(cl[-1]))


async def handle(reader, writer):
    try:
        while True:
            try:
                line, raw = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headers = [tuple(h.split(":", 1)) if ":" in h else (h, "") for h in raw]
            headers = [(k, v.strip()) for k, v in headers]
            await drain_body(reader, headers)
            target = line.split(" ")[1] if " " in line else ""
            if target.startswith("/__stats"):
                body = json.dumps(STATS).encode()
            elif target.startswith("/__reset"):
                for k in ("total", "max_in_flight", "cancelled"):
                    STATS[k] = 0
                STATS["max_in_flight"] = STATS["in_flight"]
                body = b"{}"
            else:
                STATS["total"] += 1
                STATS["in_flight"] += 1
                STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
                try:
                    await asyncio.sleep(SLEEP)
                finally:
                    STATS["in_flight"] -= 1
                body = json.dumps({"line": line, "headers": raw}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + b"content-length: %d\r\n\r\n" % len(body)
                + body
            )
            try:
                await writer.drain()
            except ConnectionError:
                STATS["cancelled"] += 1
                return
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    PORT = int(sys.argv[1])
    SLEEP = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    asyncio.run(main(PORT))
