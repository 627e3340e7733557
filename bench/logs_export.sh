#!/bin/bash
# Export speed and peak RSS of `miru export logs` over 2.16M loadgen lines (2 parts).
# usage: bench/logs_export.sh target/release/miru
MIRU=$1
D=/tmp/expb; rm -rf $D; mkdir -p $D
printf "limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\n  max_global_streams_per_user: 0\n" > $D/cfg.yaml
$MIRU --data-dir $D/data --listen 127.0.0.1:19141 --grpc-listen 127.0.0.1:19142 --config.file $D/cfg.yaml > $D/log 2>&1 &
PID=$!
for i in $(seq 100); do curl -sf 127.0.0.1:19141/ready >/dev/null && break; sleep 0.2; done
$MIRU loadgen logs --url http://127.0.0.1:19141/loki/api/v1/push --tenant exp --streams 100 --lines-per-second 600 --span 1h --start-ago 3h --seed 42 --json | tail -1
curl -s -XPOST 127.0.0.1:19141/ingester/flush -o /dev/null -w "flush %{http_code}\n"
kill $PID; wait $PID
find $D/data/objects/exp/logs -name '*.parquet' | wc -l
du -sb $D/data/objects/exp/logs
for fmt in parquet jsonl; do
  /usr/bin/time -f "export $fmt: %e s wall, %U+%S s cpu, max RSS %M KB" $MIRU export logs --data-dir $D/data --tenant exp --from now-4h --format $fmt --out $D/out.$fmt 2>&1 | tail -2
  du -sb $D/out.$fmt
done
