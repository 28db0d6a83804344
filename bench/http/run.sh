#!/usr/bin/env bash
# HTTP load run for floodgate's speed goals 2 and 3, all on this machine:
#   goal 2: /api/ping under an all-allowed load vs /healthz of the same server
#   goal 3: a flood from one identity over its limit vs /healthz
# It builds the service, starts a redis-server of its own on a free loopback
# port, runs wrk against 127.0.0.1 only, and prints medians of ROUNDS
# interleaved rounds with their ratios. Needs redis-server and wrk (Debian).
#
#   bench/http/run.sh                 # 10s per cell, 3 rounds, 64 connections
#   DURATION=5s ROUNDS=1 bench/http/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
IDENTITIES=${IDENTITIES:-1000}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitfor() { for _ in $(seq 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "not up: $1" >&2; exit 1; }

go build -o "$work/floodgate" .
rport=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile "$work/redis.log" &
pids+=($!)
sleep 0.3
redis-cli -p "$rport" ping >/dev/null

start() { # name port env...
  local name=$1 port=$2; shift 2
  env -i PATH="$PATH" PORT="$port" REDIS_URL="redis://127.0.0.1:$rport" SECRET_KEY=bench-secret-key-of-at-least-32-bytes \
    LOG_LEVEL=warn "$@" "$work/floodgate" >"$work/$name.log" 2>&1 &
  pids+=($!)
  waitfor "http://127.0.0.1:$port/healthz"
}
# "open": limits no load reaches, so every /api/ping is a full decision in Redis.
open_port=$(freeport)
start open "$open_port" RATE_LIMIT=1000000000 IP_RATE_LIMIT=0
# "flood": the tutorial's 10 per 10s; one identity floods past it.
flood_port=$(freeport)
start flood "$flood_port" RATE_LIMIT=10 RATE_WINDOW=10s IP_RATE_LIMIT=0

# Identities: cookies minted by the service itself.
for _ in $(seq "$IDENTITIES"); do
  curl -s -D - -o /dev/null "http://127.0.0.1:$open_port/healthz" | sed -n 's/^Set-Cookie: user-limiter=\([^;]*\);.*/\1/p'
done >"$work/cookies"
curl -s -D - -o /dev/null "http://127.0.0.1:$flood_port/healthz" | sed -n 's/^Set-Cookie: user-limiter=\([^;]*\);.*/\1/p' >"$work/flood-cookie"
flood_cookie=$(cat "$work/flood-cookie")

rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p'; }
p99() { sed -n 's/^ *99% *\(.*\)$/\1/p'; }
cell() { # name url [wrk args...]
  local name=$1 url=$2; shift 2
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
  echo "$name $(echo "$out" | rps) $(echo "$out" | p99)" >>"$work/cells"
  if echo "$out" | grep -q 'Non-2xx'; then
    echo "$name: $(echo "$out" | grep 'Non-2xx')" >>"$work/notes"
  fi
}

evalsha() { redis-cli -p "$rport" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }
: >"$work/cells"; : >"$work/notes"
for r in $(seq "$ROUNDS"); do
  cell healthz "http://127.0.0.1:$open_port/healthz"
  COOKIES="$work/cookies" cell ping-allowed "http://127.0.0.1:$open_port/api/ping" -s bench/http/cookies.lua
  before=$(evalsha)
  cell ping-flood "http://127.0.0.1:$flood_port/api/ping" -H "Cookie: user-limiter=$flood_cookie"
  echo "round $r: the flood cost Redis $(( $(evalsha) - before )) script calls" >>"$work/notes"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
h=$(awk '$1=="healthz"{print $2}' "$work/cells" | median)
a=$(awk '$1=="ping-allowed"{print $2}' "$work/cells" | median)
f=$(awk '$1=="ping-flood"{print $2}' "$work/cells" | median)
echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(go version | cut -d' ' -f3); $(redis-server --version | cut -d' ' -f3)"
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds (medians), $IDENTITIES identities for the allowed load"
echo
echo "| what | requests/s | ratio to /healthz | goal |"
echo "|---|---|---|---|"
printf '| GET /healthz | %.0f | 1.00 | |\n' "$h"
printf '| GET /api/ping, all allowed (one decision in Redis each) | %.0f | %.2f | >= 0.60 |\n' "$a" "$(echo "$a / $h" | bc -l)"
printf '| GET /api/ping, one identity flooding past its limit | %.0f | %.2f | >= 0.85 |\n' "$f" "$(echo "$f / $h" | bc -l)"
echo
echo "p99 latencies per cell:"; awk '{print "  " $1 ": " $3}' "$work/cells"
cat "$work/notes"
