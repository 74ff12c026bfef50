#!/bin/bash
# collect.sh: for every zring process, print anon, force-collect the core threads' heaps, print anon
for p in $(pgrep -x zring); do
  ns=$(ip netns identify $p); before=$(awk '/RssAnon/{print $2}' /proc/$p/status)
  cmds=""
  for tid in $(gdb -p $p -batch -ex "info threads" 2>&1 | grep -E "zring-core" | sed 's/^\*//' | awk '{print $1}'); do
    cmds="$cmds -ex 'thread $tid' -ex 'call (void)mi_theap_collect((void*)_mi_theap_default_safe(), 1)'"
  done
  eval timeout 30 gdb -p $p -batch $cmds >/dev/null 2>&1
  echo "$ns anon $before -> $(awk '/RssAnon/{print $2}' /proc/$p/status)"
done
