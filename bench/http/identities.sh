#!/usr/bin/env bash
# The service's memory over a million distinct identities (speed goal 4):
# starts a redis-server and floodgate (RATE_LIMIT=1, so every identity also
# enters the deny cache) on free loopback ports and runs bench/cmd/identities.
#   bench/http/identities.sh            # N=1000000
#   N=200000 bench/http/identities.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
go build -o "$work/floodgate" .
rport=$(freeport); port=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --logfile "$work/redis.log" &
pids+=($!)
sleep 0.3
env -i PATH="$PATH" PORT="$port" REDIS_URL="redis://127.0.0.1:$rport" SECRET_KEY=bench-secret-key-of-at-least-32-bytes \
  RATE_LIMIT=1 RATE_WINDOW=1h IP_RATE_LIMIT=0 LOG_LEVEL=warn "$work/floodgate" >"$work/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
(cd bench && go run ./cmd/identities -url "http://127.0.0.1:$port" -n "$N")
echo "Redis: $(redis-cli -p "$rport" dbsize) keys, $(redis-cli -p "$rport" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p') used"
