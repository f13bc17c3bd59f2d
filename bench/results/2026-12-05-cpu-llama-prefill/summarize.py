# Prints, for each ab.sh output file given, one line per run: round, library, the prefill's
# unprofiled median wall and CPU ms, and the profiled linear_fwd and rope_fwd CPU / wall ms.
import re
import sys

for path in sys.argv[1:]:
    print(path)
    run = None
    for line in open(path):
        if line.startswith("=="):
            if run:
                print(*run)
            f = line.split()
            run = [f[2], f[3], "load", line.split("load average:")[1].split(",")[0].strip()]
        elif line.startswith("##"):
            m = re.search(r"median ([\d.]+) ms wall, ([\d.]+) ms CPU", line)
            run += ["prefill wall", m.group(1), "cpu", m.group(2)]
        elif line.startswith("op linear_fwd") or line.startswith("op rope_fwd"):
            f = line.split()
            run += [f[1], f[4], "/", f[8]]
    if run:
        print(*run)
