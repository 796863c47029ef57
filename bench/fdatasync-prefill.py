#!/usr/bin/env python3
"""What one spool commit costs the kernel, growing the file or overwriting zeros.

    bench/fdatasync-prefill.py [DIR] [ROUNDS]

Writes N records of SIZE bytes, each followed by an `fdatasync`, as the spool
writer does for one group, in a file under DIR (default: the current
directory; use the spool's file system), in two modes:

* `append`: every write grows the file (the spool with `prefill_bytes = 0`);
* `prefill`: the file keeps 1 MiB of zeros written and synced ahead of the
  records, topped up 128 KiB at a time between writes, and every write
  overwrites them (the spool's default). The top-ups are counted in the
  totals, not in the per-write latencies.

Prints, per mode and round: the latency of write + `fdatasync` (p50, p90,
p99), the kernel (system) CPU time per write, and the wall time per write.
The modes alternate, ROUNDS times (default 3), so drift hits both.
"""
import os
import sys
import time

N = 3000
SIZE = 5000  # about a group of 15 events of 330 bytes
AHEAD = 1 << 20
STEP = 128 << 10


def run(directory, mode):
    path = os.path.join(directory, f"fdatasync-prefill-{os.getpid()}-{mode}.seg")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = b"x" * SIZE
        zeros = b"\0" * AHEAD
        latencies = []
        offset = zeroed_end = 0
        cpu_before, wall_before = os.times(), time.perf_counter()
        for _ in range(N):
            started = time.perf_counter()
            os.pwrite(fd, data, offset)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
            offset += SIZE
            zeroed_end = max(zeroed_end, offset)
            target = offset + AHEAD
            if mode == "prefill" and (zeroed_end == offset or target - zeroed_end >= STEP):
                os.pwrite(fd, zeros[: target - zeroed_end], zeroed_end)
                os.fdatasync(fd)
                zeroed_end = target
        cpu_after, wall_after = os.times(), time.perf_counter()
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    pct = lambda p: latencies[min(N - 1, int(N * p))] * 1e6
    system = (cpu_after.system - cpu_before.system) / N * 1e6
    wall = (wall_after - wall_before) / N * 1e6
    print(
        f"{mode:8} p50 {pct(0.5):6.0f} us  p90 {pct(0.9):6.0f} us  p99 {pct(0.99):7.0f} us"
        f"  system {system:4.0f} us/write  wall {wall:5.0f} us/write",
        flush=True,
    )


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for _ in range(rounds):
        for mode in ("append", "prefill"):
            run(directory, mode)


if __name__ == "__main__":
    main()
