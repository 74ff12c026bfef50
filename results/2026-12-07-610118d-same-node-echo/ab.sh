#!/bin/bash
# usage: ab.sh <tag> <only> <rounds> bin1 bin2 ...   (alternates the binaries each round)
tag=$1; only=$2; rounds=$3; shift 3
for r in $(seq 1 $rounds); do
  for b in "$@"; do
    n=$(basename $b)
    out=/tmp/h21/ab-$tag/$n-r$r
    mkdir -p $out
    echo "$(date -u +%T) start $n r$r load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/h21/ab-$tag/log
    /tmp/h21/loadgen peer --zring $b --peer /work/shared/peers/ztunnel --shape same --only $only --prefix zh21- --seed 1 --out $out > $out/loadgen.log 2>&1
    echo "$(date -u +%T) done $n r$r rc $?" >> /tmp/h21/ab-$tag/log
  done
done
