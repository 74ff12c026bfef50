import gdb, struct, bisect
inf = gdb.selected_inferior()
pid = inf.pid
t = gdb.parse_and_eval("(mi_theap_t*)_mi_theap_default_safe()")
nbins = t['pages'].type.range()[1] + 1
def freelist(p):
    s = set()
    while p != 0:
        s.add(p)
        p = int(gdb.parse_and_eval("*(unsigned long*)%d" % p))
    return s
pages = []   # (start, end, bin, bs)
targets = [] # (start, end, bin, bs)
for b in range(nbins):
    pq = t['pages'][b]
    bs = int(pq['block_size'])
    pg = pq['first']
    while int(pg) != 0:
        start = int(pg['page_start']); cap = int(pg['capacity'])
        pages.append((start, start + cap*bs, b, bs))
        if bs >= 8192:
            free = freelist(int(pg['free'])) | freelist(int(pg['local_free'])) | freelist(int(pg['xthread_free']) & ~3)
            for i in range(cap):
                a = start + i*bs
                if a not in free:
                    targets.append((a, a+bs, b, bs))
        pg = pg['next']
pages.sort(); targets.sort()
tstarts = [x[0] for x in targets]
pstarts = [x[0] for x in pages]
def where(addr):
    i = bisect.bisect_right(pstarts, addr) - 1
    if i >= 0 and addr < pages[i][1]:
        s, e, b, bs = pages[i]
        blk = s + ((addr - s)//bs)*bs
        return "bin%d(bs%d) blk %x +%d" % (b, bs, blk, addr-blk)
    return "other"
regions = []
for line in open("/proc/%d/maps" % pid):
    f = line.split()
    if 'rw' not in f[1]: continue
    lo, hi = [int(x, 16) for x in f[0].split('-')]
    name = f[5] if len(f) > 5 else ''
    regions.append((lo, hi, name))
refs = {}
for lo, hi, name in regions:
    step = 65536
    for base in range(lo, hi, step):
        try:
            mem = bytes(inf.read_memory(base, min(step, hi-base)))
        except Exception:
            continue
        n = len(mem)//8
        for k, v in enumerate(struct.unpack("<%dQ" % n, mem[:n*8])):
            if v < 0x20000000000 or v > 0x30000000000: continue
            i = bisect.bisect_right(tstarts, v) - 1
            if i >= 0 and v < targets[i][1]:
                ra = base + k*8
                # skip self references
                if targets[i][0] <= ra < targets[i][1]: continue
                refs.setdefault(targets[i][0], []).append((ra, name))
for s, e, b, bs in targets:
    print("TARGET bin%d bs%d %x" % (b, bs, s))
    for ra, name in refs.get(s, [])[:4]:
        print("   from %x %s %s" % (ra, name, where(ra)))
