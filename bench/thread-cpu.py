#!/usr/bin/env python3
"""Per-thread CPU of one process while a command runs.

    bench/thread-cpu.py PID -- COMMAND...

Runs COMMAND (typically wrk), then prints, per thread name of PID: threads,
user and system milliseconds, voluntary and involuntary context switches, and,
when COMMAND printed wrk's "N requests in", CPU microseconds and context
switches per request. Read from /proc/PID/task/*/{comm,stat,status} before
and after, so it costs the measured process nothing.
"""
import os, subprocess, sys, collections
pid = sys.argv[1]; cmd = sys.argv[sys.argv.index('--')+1:]
hz = os.sysconf('SC_CLK_TCK')
def snap():
    out = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            comm = open(f'/proc/{pid}/task/{tid}/comm').read().strip()
            st = open(f'/proc/{pid}/task/{tid}/stat').read().rsplit(')',1)[1].split()
            ut, stt = int(st[11]), int(st[12])
            vc = nvc = 0
            for l in open(f'/proc/{pid}/task/{tid}/status'):
                if l.startswith('voluntary_ctxt_switches'): vc = int(l.split()[1])
                if l.startswith('nonvoluntary_ctxt_switches'): nvc = int(l.split()[1])
            out[tid] = (comm, ut, stt, vc, nvc)
        except FileNotFoundError:
            pass
    return out
a = snap()
r = subprocess.run(cmd, capture_output=True, text=True)
b = snap()
sys.stdout.write(r.stdout)
agg = collections.defaultdict(lambda: [0,0,0,0,0])
for tid, v in b.items():
    o = a.get(tid, (v[0],0,0,0,0))
    g = agg[v[0]]
    g[0] += 1
    for i in range(1,5): g[i] += v[i]-o[i]
reqs = None
for l in r.stdout.splitlines():
    if 'requests in' in l: reqs = int(l.split()[0])
print(f"{'thread':20} {'n':>3} {'user_ms':>9} {'sys_ms':>9} {'vcsw':>9} {'ivcsw':>8}" + ("  us/req(u+s) csw/req" if reqs else ""))
tot=[0,0,0,0]
for name, g in sorted(agg.items(), key=lambda x: -(x[1][1]+x[1][2])):
    u, s = g[1]*1000/hz, g[2]*1000/hz
    for i in range(4): tot[i]+=g[i+1]
    extra = f"  {((u+s)*1000/reqs):8.2f} {((g[3]+g[4])/reqs):6.3f}" if reqs else ""
    print(f"{name:20} {g[0]:3} {u:9.0f} {s:9.0f} {g[3]:9} {g[4]:8}{extra}")
u, s = tot[0]*1000/hz, tot[1]*1000/hz
print(f"{'TOTAL':20} {'':3} {u:9.0f} {s:9.0f} {tot[2]:9} {tot[3]:8}" + (f"  {((u+s)*1000/reqs):8.2f} {((tot[2]+tot[3])/reqs):6.3f}  reqs={reqs}" if reqs else ""))
