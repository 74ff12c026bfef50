#!/bin/bash
# usage: trace.sh <outdir> <zring-bin> <only-keys> [extra loadgen args]
# Runs the cross-node peer figures and counts syscalls/switches of each of the 4 proxies.
out=$1; zr=$2; only=$3; shift 3
mkdir -p $out
EV=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_sched_yield,context-switches,sched:sched_wakeup,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_task_add,io_uring:io_uring_poll_arm,io_uring:io_uring_cqring_wait
/tmp/h2/loadgen peer --zring $zr --peer /work/shared/peers/ztunnel --shape cross --only $only --no-direct --prefix zrh2- --seed 1 --out $out "$@" > $out/loadgen.log 2>&1 &
lg=$!
declare -A done
while kill -0 $lg 2>/dev/null; do
  for p in zring ztunnel; do for n in a b; do
    k=$p-$n; [ -n "${done[$k]}" ] && continue
    ns=zrh2-x-$p-$n
    pid=$(ip netns pids $ns 2>/dev/null | while read q; do c=$(cat /proc/$q/comm 2>/dev/null); want=$p; [ $p = zring ] && want=${COMM:-$(basename $zr | cut -c1-15)}; [ "$c" = "$want" ] && echo $q; done | head -1)
    [ -z "$pid" ] && continue
    done[$k]=$pid
  done; done
  if [ ${#done[@]} -eq 4 ]; then break; fi
  sleep 0.2
done
for k in ztunnel-a ztunnel-b; do if [ -n "$REC" ]; then perf record $REC -p ${done[$k]} -o $out/rec-$k.data 2>$out/rec-$k.err & else
  perf stat --per-thread -x, -e $EV -p ${done[$k]} -o $out/perf-$k.csv & fi
done
sleep 1.5
for k in zring-a zring-b; do if [ -n "$REC" ]; then perf record $REC -p ${done[$k]} -o $out/rec-$k.data 2>$out/rec-$k.err & else
  perf stat --per-thread -x, -e $EV -p ${done[$k]} -o $out/perf-$k.csv & fi
done
wait $lg
echo "loadgen rc $?" 
sleep 1
