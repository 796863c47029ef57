#!/usr/bin/env python3
"""The physical floor: the kernel's CPU per request/response pair over loopback
TCP on this machine. A blocking server answers each ~350-byte request (the size
of the edge benchmark's POST) with a ~150-byte response, one connection, one
request at a time. Prints the server's *system* CPU time per pair (recv + send
+ waking the peer), read from /proc, so Python's own (user) time is left out.

    python3 bench/loopback-floor.py [N]
"""
import os, socket, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
REQ = b"P" * 350
RESP = b"R" * 150

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])  # utime, stime (ticks)

lsock = socket.socket(); lsock.bind(("127.0.0.1", 0)); lsock.listen(1)
port = lsock.getsockname()[1]
child = os.fork()
if child == 0:
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        got = 0
        while got < len(REQ):
            b = conn.recv(65536)
            if not b:
                os._exit(0)
            got += len(b)
        conn.sendall(RESP)
c = socket.create_connection(("127.0.0.1", port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def round_trip():
    c.sendall(REQ)
    got = 0
    while got < len(RESP):
        got += len(c.recv(65536))
for _ in range(1000):
    round_trip()
u0, s0 = cpu(child); t0 = time.time()
for _ in range(N):
    round_trip()
u1, s1 = cpu(child); t1 = time.time()
c.close(); os.waitpid(child, 0)
hz = os.sysconf("SC_CLK_TCK")
print(f"{N} pairs in {t1 - t0:.1f} s; server system CPU {(s1 - s0) / hz * 1e6 / N:.2f} µs/pair, "
      f"user (Python) {(u1 - u0) / hz * 1e6 / N:.2f} µs/pair, load average {os.getloadavg()[0]:.1f}")
