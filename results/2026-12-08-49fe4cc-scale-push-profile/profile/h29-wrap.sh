#!/bin/sh
echo $$ > /tmp/h29-zring.pid
exec ${H29_BIN:-/work/target-helper-29/release/zring} "$@"
