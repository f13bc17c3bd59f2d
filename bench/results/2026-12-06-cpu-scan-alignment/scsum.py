import re,sys,statistics as st
d={}
cur=None;k=0
for line in open(sys.argv[1]):
    m=re.match(r'## round (\d+) (\w+)',line)
    if m: cur=m.group(2);k=0;continue
    m=re.match(r'\s+1024\s+4\s+(\d+)\s+\S+\s+(\d+)\s+(\S+)',line)
    if m:
        name=['mamba','mamba2'][k];k+=1
        d.setdefault((name,'train',cur),[]).append(float(m.group(1)))
        d.setdefault((name,'prefill',cur),[]).append(float(m.group(2)))
        d.setdefault((name,'decode',cur),[]).append(float(m.group(3)))
    m=re.match(r'proc cpu ([\d.]+)\+([\d.]+) s wall ([\d.]+)',line)
    if m: d.setdefault(('proc','cpu_s',cur),[]).append(float(m.group(1))+float(m.group(2)))
for key in sorted({(a,b) for a,b,c in d}):
    o=d[key+('old',)]
    s=f"{key[0]:7s} {key[1]:8s} old med {st.median(o):9.1f} [{min(o):.1f}-{max(o):.1f}]"
    for v in ('new','new2'):
        n=d[key+(v,)]; r=[y/x for x,y in zip(o,n)]
        s+=f" | {v} med {st.median(n):9.1f} ratio med {st.median(r):.3f} ({min(r):.3f}-{max(r):.3f})"
    print(s)
