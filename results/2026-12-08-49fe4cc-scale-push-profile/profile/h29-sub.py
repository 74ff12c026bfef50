import sys, re, collections
# samples whose stack matches sys.argv[2]; print histogram of the frame just inside (callee) of the match, and leaf
pat = re.compile(sys.argv[2]); depth = int(sys.argv[3]) if len(sys.argv) > 3 else 1
c = collections.Counter(); leaf = collections.Counter(); n = 0
frames = []
def flush(fr):
    global n
    if not fr: return
    idx = [i for i, f in enumerate(fr) if pat.search(f)]
    if not idx: return
    n += 1
    i = idx[0]  # innermost matching frame
    callee = " <- ".join(fr[max(0, i - depth):i][::-1]) if i > 0 else "(self)"
    c[callee] += 1
    leaf[fr[0][:90]] += 1
for line in open(sys.argv[1]):
    if not line.strip():
        flush(frames); frames = []; continue
    if not line.startswith("\t"): continue
    p = line.strip().split(None, 1); s = p[1] if len(p) > 1 else "?"
    if p[0].startswith("ffffffff"): s = "[k]" + s
    s = re.sub(r"\s*\(inlined\)", "", s)
    frames.append(s)
flush(frames)
print("samples", n)
for k, v in c.most_common(25): print(f"{v:5d} {k[:200]}")
print("-- leaves")
for k, v in leaf.most_common(25): print(f"{v:5d} {k}")
