#!/bin/bash
# Bytes at rest of logs at several zstd levels (`storage.logs_zstd_level`): the
# Apache access logs of ../shared/data (tenant "apache") and 2 min of loadgen
# logs (100 streams, 2,000 lines/s, seed 42; tenant "anonymous"), flushed
# together; the flush's server CPU covers both.
# usage: bench/logs_zstd_levels.sh target/release/miru [levels...]   (default 3 6 9 10 12 15)
MIRU=$1; shift
LEVELS=${*:-3 6 9 10 12 15}
sum() { find "$1" -name "*$2" -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
for lvl in $LEVELS; do
  D=/tmp/miru-zstd-$lvl; rm -rf $D; mkdir -p $D
  printf "limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\nstorage:\n  logs_zstd_level: $lvl\n" > $D/cfg.yaml
  $MIRU --data-dir $D/data --listen 127.0.0.1:19131 --grpc-listen 127.0.0.1:19132 --config.file $D/cfg.yaml > $D/log 2>&1 &
  PID=$!
  for i in $(seq 100); do curl -sf 127.0.0.1:19131/ready >/dev/null && break; sleep 0.2; done
  raw=$(python3 "$(dirname "$0")/push_apache_logs.py" http://127.0.0.1:19131/loki/api/v1/push)
  $MIRU loadgen logs --url http://127.0.0.1:19131/loki/api/v1/push --streams 100 --lines-per-second 2000 \
    --span 2m --start-ago 1h --seed 42 --json > $D/loadgen.json 2>/dev/null
  c0=$(awk '{print ($14+$15)/100}' /proc/$PID/stat)
  curl -s -XPOST 127.0.0.1:19131/ingester/flush -o /dev/null
  c1=$(awk '{print ($14+$15)/100}' /proc/$PID/stat)
  O=$D/data/objects
  echo "zstd $lvl: apache $raw, parquet $(sum $O/apache/logs .parquet), blooms $(sum $O/apache/logs .blooms);" \
    "loadgen parquet $(sum $O/anonymous/logs .parquet), blooms $(sum $O/anonymous/logs .blooms); flush cpu $(echo "$c1 - $c0" | bc) s"
  kill $PID; wait $PID 2>/dev/null
  rm -rf $D
done
