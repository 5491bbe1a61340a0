#!/usr/bin/env bash
# `make cluster`: Redis, two shield nodes and HAProxy on this machine, to try cluster mode.
# Everything stops on Ctrl-C. Logs and each node's cache are under var/cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BASE=${CLUSTER_DIR:-var/cluster}
REDIS_PORT=${REDIS_PORT:-6380}
PORT=${PORT:-8080}
TOKEN=${SHIELD_ADMIN_TOKEN:-cluster-demo-admin-token}
mkdir -p "$BASE"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$BASE/redis.log" 2>&1 &
pids+=($!)
for i in 1 2; do
    dir="$BASE/node$i"
    mkdir -p "$dir"
    cat >"$dir/shield.toml" <<EOF
[shield]
cache_dir = "$dir/cache"
state_dir = "$dir/state"
asset_dir = "$BASE/assets"
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"
node_id = "node$i"
admin_token = "$TOKEN"
served_by_header = true

[projects.demo]
origin = "samples/"
EOF
    SHIELD_CONFIG="$dir/shield.toml" SHIELD_BIND="127.0.0.1:800$i" WEB_CONCURRENCY=2 \
        "$VENV/bin/gunicorn" -c gunicorn.conf.py app:app >"$dir/gunicorn.log" 2>&1 &
    pids+=($!)
done
sed "s/bind :8080/bind :$PORT/" deploy/haproxy.cfg >"$BASE/haproxy.cfg"
haproxy -db -f "$BASE/haproxy.cfg" >"$BASE/haproxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 300); do  # the nodes replay, then HAProxy sees them ready
    if curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
cat <<EOF
shield cluster: HAProxy on http://localhost:$PORT, nodes node1 (:8001) and node2 (:8002), Redis on :$REDIS_PORT
    curl -si 'http://localhost:$PORT/demo/rocket.jpg?w=400' | grep -i x-served-by
    curl -s -X POST http://localhost:$PORT/v1/purge -H 'Authorization: Bearer $TOKEN' \\
         -H 'Content-Type: application/json' -d '{"paths": ["/demo/rocket.jpg"]}'
Ctrl-C stops everything.
EOF
wait
