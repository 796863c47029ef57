#!/usr/bin/env python3
"""Self cost per function from a callgrind file, divided by N requests:
    python3 bench/callgrind-self-costs.py FILE N [TOP]
(callgrind_annotate mis-attributes self costs of heavily inlined Rust here)."""
import sys, re, collections
names = {}
def name(kind, s):
    m = re.match(r'\((\d+)\)(?: (.*))?', s)
    if m:
        k = (kind, m.group(1))
        if m.group(2): names[k] = m.group(2)
        return names.get(k, s)
    return s
self_cost = collections.Counter()
fn = None; skip_next = False; total = 0
for line in open(sys.argv[1], errors='replace'):
    line = line.rstrip('\n')
    if line.startswith('fn='):
        fn = name('fn', line[3:])
    elif line.startswith(('cfn=', 'cfi=', 'cfl=', 'cob=')):
        if line.startswith('cfn='): name('fn', line[4:])
    elif line.startswith('calls='):
        skip_next = True
    elif line and (line[0].isdigit() or line[0] in '+-*'):
        if skip_next: skip_next = False; continue
        parts = line.split()
        if len(parts) >= 2 and fn:
            c = int(parts[1]); self_cost[fn] += c; total += c
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
print(f"total {total:,} = {total/n:,.0f} per request")
for f, c in self_cost.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 45):
    print(f"{c/n:>9,.0f} {100*c/total:5.1f}%  {f[:150]}")
