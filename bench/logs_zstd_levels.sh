#!/bin/bash
# Bytes at rest of the Apache access logs (../shared/data) at several zstd levels.
# usage: bench/logs_zstd_levels.sh target/release/miru
MIRU=$1
for lvl in 3 9 15 19; do
  D=/tmp/ap$lvl; rm -rf $D; mkdir -p $D
  printf "limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\nstorage:\n  flush_zstd_level: $lvl\n" > $D/cfg.yaml
  $MIRU --data-dir $D/data --listen 127.0.0.1:19131 --grpc-listen 127.0.0.1:19132 --config.file $D/cfg.yaml > $D/log 2>&1 &
  PID=$!
  for i in $(seq 100); do curl -sf 127.0.0.1:19131/ready >/dev/null && break; sleep 0.2; done
  raw=$(python3 "$(dirname "$0")/push_apache_logs.py" http://127.0.0.1:19131/loki/api/v1/push)
  c0=$(awk '{print ($14+$15)/100}' /proc/$PID/stat)
  curl -s -XPOST 127.0.0.1:19131/ingester/flush -o /dev/null
  c1=$(awk '{print ($14+$15)/100}' /proc/$PID/stat)
  pq=$(find $D/data/objects/apache/logs -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
  bl=$(find $D/data/objects/apache/logs -name '*.blooms' -printf '%s\n' | awk '{s+=$1} END {print s}')
  echo "zstd $lvl: $raw, parquet $pq, blooms $bl, flush cpu $(echo "$c1 - $c0" | bc) s"
  kill $PID; wait $PID 2>/dev/null
done
