#!/bin/bash
# usage: trace.sh <outdir> <zring-bin> <only-keys> [extra loadgen args]
# Same-node peer figures; counts syscalls/switches of both proxies (perf stat, whole run).
out=$1; zr=$2; only=$3; shift 3
mkdir -p $out
EV=net:net_dev_xmit,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_splice,syscalls:sys_enter_poll,syscalls:sys_enter_futex,context-switches,sched:sched_wakeup,io_uring:io_uring_submit_req,io_uring:io_uring_poll_arm,io_uring:io_uring_cqring_wait
/tmp/h21/loadgen peer --zring $zr --peer /work/shared/peers/ztunnel --shape same --only $only --no-direct --prefix zh21t- --seed 1 --out $out "$@" > $out/loadgen.log 2>&1 &
lg=$!
declare -A done
while kill -0 $lg 2>/dev/null; do
  for p in zring ztunnel; do
    [ -n "${done[$p]}" ] && continue
    want=$p; [ $p = zring ] && want=$(basename $zr | cut -c1-15)
    pid=$(ip netns pids zh21t-$p 2>/dev/null | while read q; do c=$(cat /proc/$q/comm 2>/dev/null); [ "$c" = "$want" ] && echo $q; done | head -1)
    [ -z "$pid" ] && continue
    done[$p]=$pid
    if [ -n "$REC" ]; then perf record $REC -p $pid -o $out/rec-$p.data 2>$out/rec-$p.err &
    else perf stat --per-thread -x, -e $EV -p $pid -o $out/perf-$p.csv & fi
  done
  sleep 0.2
done
wait $lg
echo "loadgen rc $?"
sleep 1
