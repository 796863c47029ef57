#!/usr/bin/env python3
"""Fixed, deterministic client for instruction counting: N requests, one at a
time, over ONE keep-alive HTTP/1.1 connection (or one connection per request
with --close). Prints the status counts. Its own cost is not measured (it is
a different process from the server under callgrind/strace)."""
import socket, sys, argparse, collections

BODY = b'{"name":"pageview","url":"https://localhost/pricing","referrer":"https://news.example/item"}'
UA = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

def request(kind, batch):
    if kind == "event":
        body = BODY if batch == 1 else b"[" + b",".join([BODY] * batch) + b"]"
        return (b"POST /api/event HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"User-Agent: " + UA + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return b"GET /nope HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + UA + b"\r\n\r\n"

def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest[length:]

def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--kind", choices=["event", "404"], default="event")
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    req = request(args.kind, args.batch)
    statuses = collections.Counter()
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(args.n):
        sock.sendall(req)
        status, buf = read_response(sock, buf)
        statuses[status] += 1
    sock.close()
    print(" ".join(f"{k}:{v}" for k, v in sorted(statuses.items())))

main()
