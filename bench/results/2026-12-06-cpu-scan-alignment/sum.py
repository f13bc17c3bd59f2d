import sys,re,statistics as st
d={}
cur=None
sums={}
for line in open(sys.argv[1]):
    m=re.match(r'## round (\d+) (\w+)',line)
    if m: cur=m.group(2); continue
    m=re.match(r'(\S+)\s+wall\s+([\d.]+) ms\s+cpu\s+([\d.]+) ms\s+sum (\S+)',line)
    if m:
        d.setdefault((m.group(1),cur),[]).append((float(m.group(2)),float(m.group(3))))
        sums.setdefault(m.group(1),set()).add(m.group(4))
ops=sorted({k[0] for k in d}, key=lambda o:list(d).index((o,'old')))
for o in ops:
    a=d[(o,'old')]; b=d[(o,'new')]
    for i,lab in ((0,'wall'),(1,'cpu')):
        A=[x[i] for x in a]; B=[x[i] for x in b]
        r=[y/x for x,y in zip(A,B)]
        print(f"{o:8s} {lab:4s} old med {st.median(A):8.2f} [{min(A):.2f}-{max(A):.2f}]  new med {st.median(B):8.2f} [{min(B):.2f}-{max(B):.2f}]  new/old med {st.median(r):.3f} range {min(r):.3f}-{max(r):.3f}  wins {sum(x<1 for x in r)}/{len(r)}")
    print(f"{o:8s} bits identical across builds: {len(sums[o])==1}")
