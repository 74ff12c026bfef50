import json, sys, glob, collections, os
d = sys.argv[1]
keys = sys.argv[2].split(',') if len(sys.argv) > 2 else ['echo_closed']
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
rep = json.load(open(glob.glob(d + '/*-peer/report.json')[0]))
echoes = collections.Counter()
for f in rep['figures']:
    if f['key'] in keys:
        for p in ('zring', 'ztunnel'):
            for s in f['samples'][p]:
                echoes[p] += s['values']['rps'] * 3.6
short = {'raw_syscalls:sys_enter': 'syscalls', 'syscalls:sys_enter_io_uring_enter': 'io_uring_enter',
 'syscalls:sys_enter_epoll_wait': 'epoll_wait', 'syscalls:sys_enter_epoll_pwait': 'epoll_pwait',
 'syscalls:sys_enter_sendto': 'sendto', 'syscalls:sys_enter_sendmsg': 'sendmsg', 'syscalls:sys_enter_recvfrom': 'recvfrom',
 'syscalls:sys_enter_recvmsg': 'recvmsg', 'syscalls:sys_enter_write': 'write', 'syscalls:sys_enter_writev': 'writev',
 'syscalls:sys_enter_read': 'read', 'syscalls:sys_enter_readv': 'readv', 'syscalls:sys_enter_futex': 'futex',
 'syscalls:sys_enter_epoll_ctl': 'epoll_ctl', 'syscalls:sys_enter_clock_gettime':'clock_gettime','syscalls:sys_enter_sched_yield':'sched_yield',
 'context-switches': 'ctx switches', 'sched:sched_wakeup': 'wakeups done', 'io_uring:io_uring_submit_req': 'uring SQEs',
 'io_uring:io_uring_complete': 'uring CQEs', 'io_uring:io_uring_task_add': 'uring task_add', 'io_uring:io_uring_poll_arm': 'uring poll_arm',
 'io_uring:io_uring_cqring_wait': 'uring cqring_wait'}
rows = collections.OrderedDict()
threads = {}
for p in ('zring', 'ztunnel'):
    for n in ('a', 'b'):
        c = collections.Counter(); th = collections.Counter()
        for line in open(f'{d}/perf-{p}-{n}.csv'):
            if line.startswith('#') or not line.strip(): continue
            parts = line.split(',')
            try: v = int(parts[1])
            except: continue
            ev = short.get(parts[3], parts[3])
            c[ev] += v
            if ev == 'ctx switches' and v > 0: th[parts[0].rsplit('-',1)[0]] += v
        rows[f'{p} {n.upper()}'] = c; threads[f'{p} {n.upper()}'] = th
print('echoes: ' + ', '.join(f'{p} {echoes[p]:.0f}' for p in echoes))
cols = list(rows)
print('| per echo | ' + ' | '.join(cols) + ' |')
print('|---|' + '---|' * len(cols))
for ev in short.values():
    vals = [rows[c][ev] / echoes[c.split()[0]] for c in cols]
    if all(v < 0.005 for v in vals): continue
    print(f'| {ev} | ' + ' | '.join(f'{v:.2f}' for v in vals) + ' |')
for c in cols:
    e = echoes[c.split()[0]]
    print(c, 'ctx switches by thread per echo:', ', '.join(f'{t} {v/e:.2f}' for t, v in threads[c].most_common(6)))
for f in rep['figures']:
    if f['key'] in keys:
        for p in ('zring', 'ztunnel'):
            print(f['key'], p, 'p50', [s['values']['p50_us'] for s in f['samples'][p]], 'cpu/1k', [round(s['values']['cpu_s_per_1k'],4) for s in f['samples'][p]])
