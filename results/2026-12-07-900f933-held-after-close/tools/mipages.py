import gdb
t = gdb.parse_and_eval("(mi_theap_t*)_mi_theap_default_safe()")
nbins = t['pages'].type.range()[1] + 1
tot_pages = 0; tot_bytes = 0; tot_used = 0
rows = []
for b in range(nbins):
    pq = t['pages'][b]
    pg = pq['first']
    n = 0; used = 0; cap = 0; psize = 0
    while int(pg) != 0:
        n += 1
        bs = int(pg['block_size'])
        used += int(pg['used']) * bs
        cap += int(pg['capacity']) * bs
        try:
            psize += int(pg['page_committed']) if False else int(pg['reserved']) * bs
        except Exception:
            pass
        pg = pg['next']
    if n:
        rows.append((b, int(pq['block_size']), n, used, cap, psize))
        tot_pages += n; tot_bytes += cap; tot_used += used
for r in rows:
    print("bin %3d bsize %8d pages %4d used %9d cap %9d reserved %9d" % r)
print("total pages", tot_pages, "cap", tot_bytes, "used", tot_used)
