import sys, re, collections
# for samples whose leaf matches argv[2], histogram of the first N non-generic frames up the stack
pat = re.compile(sys.argv[2]); N = int(sys.argv[3])
skip = re.compile(r"^(core::|alloc::|<alloc|<core|std::)")
c = collections.Counter(); frames = []
def flush(fr):
    if not fr or not pat.search(fr[0]): return
    up = [f for f in fr[1:] if not skip.search(f)][:N]
    c[" <- ".join(up)] += 1
for line in open(sys.argv[1]):
    if not line.strip():
        flush(frames); frames = []; continue
    if not line.startswith("\t"): continue
    p = line.strip().split(None, 1); s = p[1] if len(p) > 1 else "?"
    if p[0].startswith("ffffffff"): s = "[k]" + s
    s = re.sub(r"\s*\(inlined\)", "", s); s = re.sub(r"zring::config::", "", s)
    frames.append(s)
flush(frames)
for k, v in c.most_common(15): print(f"{v:5d} {k[:400]}")
