import json, sys, glob, collections
d = sys.argv[1]
keys = sys.argv[2].split(',') if len(sys.argv) > 2 else ['echo_closed']
rep = json.load(open(glob.glob(d + '/*-peer/report.json')[0]))
echoes = collections.Counter()
for f in rep['figures']:
    if f['key'] in keys:
        for p in ('zring', 'ztunnel'):
            for s in f['samples'][p]:
                echoes[p] += s['values']['rps'] * 3.6
rows = {}
for p in ('zring', 'ztunnel'):
    c = collections.Counter(); th = collections.Counter()
    for line in open(f'{d}/perf-{p}.csv'):
        if line.startswith('#') or not line.strip(): continue
        parts = line.split(',')
        try: v = int(parts[1])
        except: continue
        ev = parts[3].replace('syscalls:sys_enter_', '').replace('raw_syscalls:sys_enter', 'syscalls')
        c[ev] += v
        if ev == 'context-switches' and v > 0: th[parts[0].rsplit('-',1)[0]] += v
    rows[p] = (c, th)
print('echoes:', dict(echoes))
evs = list(rows['zring'][0].keys())
print('| per echo | zring | ztunnel |'); print('|---|---|---|')
for ev in evs:
    vals = [rows[p][0][ev] / echoes[p] for p in ('zring', 'ztunnel')]
    if all(v < 0.005 for v in vals): continue
    print(f'| {ev} | ' + ' | '.join(f'{v:.2f}' for v in vals) + ' |')
for p in rows:
    print(p, 'ctx switches by thread per echo:', ', '.join(f'{t} {v/echoes[p]:.2f}' for t, v in rows[p][1].most_common(6)))
for f in rep['figures']:
    if f['key'] in keys:
        for p in ('zring', 'ztunnel'):
            print(f['key'], p, 'p50', [s['values'].get('p50_us') for s in f['samples'][p]], 'cpu/1k', [round(s['values'].get('cpu_s_per_1k',0),4) for s in f['samples'][p]])
