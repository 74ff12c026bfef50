#!/bin/bash
# usage: h29-prof.sh <outdir> <bin>
out=$1; export H29_BIN=$2; mkdir -p $out; rm -f /tmp/h29-zring.pid
/work/target-helper-29/release/zring-loadgen scale --peer /work/shared/peers/ztunnel --zring /tmp/h29-wrap.sh --proxies zring --pushes 200 --bulk 10 --prefix h29- --out $out/scale > $out/scale.log 2>&1 &
lg=$!
while [ ! -s /tmp/h29-zring.pid ]; do sleep 0.1; done
pid=$(cat /tmp/h29-zring.pid)
sleep ${PRE:-6}
snap() { for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm) $(cut -d' ' -f1,3 $t/schedstat)"; done; }
snap > $out/sched0; date +%s.%N > $out/t0
perf record -g --call-graph dwarf,16384 -F ${F:-4000} -p $pid -o $out/perf.data -- sleep ${DUR:-10} 2> $out/perf.log
snap > $out/sched1; date +%s.%N > $out/t1
wait $lg
