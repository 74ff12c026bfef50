import json, glob, sys, statistics as st, os
d = sys.argv[1]
def med(x): return st.median(x) if x else float('nan')
rows = []
for run in sorted(glob.glob(d + '/*-r*')):
    fs = glob.glob(run + '/*-peer/report.json')
    if not fs: continue
    r = json.load(open(fs[0]))
    name = os.path.basename(run)
    out = [name]
    for f in r['figures']:
        s = f['samples']
        g = lambda p, k: med([x['values'][k] for x in s.get(p, []) if k in x['values']])
        k = f['key']
        if k.startswith('echo') or k.startswith('open'):
            cz, ct = g('zring', 'cpu_s_per_1k'), g('ztunnel', 'cpu_s_per_1k')
            pz, pt, pd = g('zring', 'p50_us'), g('ztunnel', 'p50_us'), g('direct', 'p50_us')
            q = f'{k}: cpu {cz:.4f}/{ct:.4f}={cz/ct:.2f}x p50 {pz:.0f}/{pt:.0f}={pz/pt:.2f}x'
            if pd == pd: q += f' added {(pz-pd)/(pt-pd):.2f}x (direct {pd:.0f})'
            q += f' p99 {g("zring","p99_us"):.0f}/{g("ztunnel","p99_us"):.0f}'
            out.append(q)
        elif k.startswith('bulk'):
            keys = list(s['zring'][0]['values'].keys())
            gz, gt = g('zring', 'gbps'), g('ztunnel', 'gbps')
            cz, ct = g('zring', 'cpu_s_per_gb'), g('ztunnel', 'cpu_s_per_gb')
            out.append(f'{k}: Gb/s {gz:.2f}/{gt:.2f}={gz/gt:.2f}x cpu/GB {cz:.3f}/{ct:.3f}={cz/ct:.2f}x')
        else:
            out.append(f'{k}: ' + json.dumps({p: s[p][0]['values'] for p in s})[:300])
    print(' | '.join(out))
