#!/usr/bin/env bash
# Performance of `tokenpace serve`, printed as figures (not a test). One load tool
# (`tokenpace bench`) measures the simulator directly and through the gateway, side by side
# in one run, against the simulator with zero delays, on loopback.
#
#   scripts/gateway-perf.sh
#   DURATION=10s scripts/gateway-perf.sh
#   THREADS=1 scripts/gateway-perf.sh     # the gateway on one thread
#
# 1. Added latency at concurrency 1, cache off (cache-control: no-store): end-to-end p50/p99
#    non-streamed; TTFT p50/p99 and the per-chunk gap (ICL p50) streamed.
# 2. Cache hits end to end: memory tier (SQLite store behind it), SQLite tier alone
#    (memory_max_bytes = 0), Redis tier alone (needs redis-server).
# 3. Throughput at concurrency 32, cache off: gateway vs direct.
# 4. Memory: idle RSS, and RSS after the load runs (cache off).
#
# Everything shares this machine's cores (simulator, gateway, load generator), so the
# gateway's figures include contention a separate box would not have.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
# shellcheck source=perf-common.sh
source scripts/perf-common.sh

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# bench OUT.json ARGS...: one quiet bench run.
bench() {
    local out=$1; shift
    "$BIN" bench --quiet --json "$out" "$@" >/dev/null || true
}

lat() { # lat FILE METRIC PCT
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['series'][0]; print('%.3f' % s['latency_ms'][sys.argv[2]][sys.argv[3]])" "$1" "$2" "$3"
}
rps() {
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['series'][0]; print('%.0f' % s['throughput']['full']['requests_per_s'])" "$1"
}
failed() {
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['series'][0]; print(s['requests']['failed'])" "$1"
}

start sim sim --listen 127.0.0.1:0
SIM=$URL
THREADS=${THREADS:-}
start gw serve --upstream "sim=$SIM" --listen 127.0.0.1:0 --cache memory ${THREADS:+--threads "$THREADS"}
GW=$URL; GW_PID=$PID
sleep 0.5
IDLE=$(rss_kib "$GW_PID")
NOSTORE=(-H 'cache-control: no-store')
MODEL=sim:tokens=16

echo "== 1. added latency at concurrency 1 (cache off; $MODEL; $DURATION each)"
bench "$TMP/d1.json" --base-url "$SIM/v1" --model "$MODEL" --no-stream -c 1 --duration "$DURATION" --warmup 100
bench "$TMP/g1.json" --base-url "$GW/v1" --model "$MODEL" --no-stream -c 1 --duration "$DURATION" --warmup 100 "${NOSTORE[@]}"
for p in p50 p99; do
    d=$(lat "$TMP/d1.json" e2e_ms $p); g=$(lat "$TMP/g1.json" e2e_ms $p)
    printf '  non-streamed E2E %s: direct %8s ms  gateway %8s ms  added %+8.1f us\n' "$p" "$d" "$g" "$(python3 -c "print(($g-$d)*1000)")"
done
bench "$TMP/d1s.json" --base-url "$SIM/v1" --model "$MODEL" -c 1 --duration "$DURATION" --warmup 100
bench "$TMP/g1s.json" --base-url "$GW/v1" --model "$MODEL" -c 1 --duration "$DURATION" --warmup 100 "${NOSTORE[@]}"
for p in p50 p99; do
    d=$(lat "$TMP/d1s.json" ttft_ms $p); g=$(lat "$TMP/g1s.json" ttft_ms $p)
    printf '  streamed TTFT %s:    direct %8s ms  gateway %8s ms  added %+8.1f us\n' "$p" "$d" "$g" "$(python3 -c "print(($g-$d)*1000)")"
done
d=$(lat "$TMP/d1s.json" icl_ms p50); g=$(lat "$TMP/g1s.json" icl_ms p50)
printf '  streamed per-chunk gap (ICL p50): direct %s ms  gateway %s ms  added %+.2f us\n' "$d" "$g" "$(python3 -c "print(($g-$d)*1000)")"

echo "== 2. cache hits end to end (identical requests; concurrency 1; $DURATION each)"
bench "$TMP/hm.json" --base-url "$GW/v1" --model "$MODEL" --no-stream -c 1 --duration "$DURATION" --warmup 100
printf '  memory tier:  E2E p50 %s ms  p99 %s ms\n' "$(lat "$TMP/hm.json" e2e_ms p50)" "$(lat "$TMP/hm.json" e2e_ms p99)"
cat >"$TMP/sqlite.toml" <<TOML
[upstreams.sim]
url = "$SIM"
[cache]
store = "sqlite"
path = "$TMP/cache.sqlite"
memory_max_bytes = 0
TOML
start gws serve --config "$TMP/sqlite.toml" --listen 127.0.0.1:0
bench "$TMP/hs.json" --base-url "$URL/v1" --model "$MODEL" --no-stream -c 1 --duration "$DURATION" --warmup 100
printf '  SQLite tier:  E2E p50 %s ms  p99 %s ms  (memory tier disabled)\n' "$(lat "$TMP/hs.json" e2e_ms p50)" "$(lat "$TMP/hs.json" e2e_ms p99)"
bench "$TMP/hss.json" --base-url "$URL/v1" --model "$MODEL" -c 1 --duration "$DURATION" --warmup 100
printf '  SQLite tier, streamed replay: TTFT p50 %s ms  p99 %s ms\n' "$(lat "$TMP/hss.json" ttft_ms p50)" "$(lat "$TMP/hss.json" ttft_ms p99)"
kill "$PID"
if command -v redis-server >/dev/null; then
    RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
    PIDS+=("$!")
    sleep 0.5
    cat >"$TMP/redis.toml" <<TOML
[upstreams.sim]
url = "$SIM"
[cache]
store = "redis"
redis_url = "redis://127.0.0.1:$RPORT/"
memory_max_bytes = 0
TOML
    start gwr serve --config "$TMP/redis.toml" --listen 127.0.0.1:0
    bench "$TMP/hr.json" --base-url "$URL/v1" --model "$MODEL" --no-stream -c 1 --duration "$DURATION" --warmup 100
    printf '  Redis tier:   E2E p50 %s ms  p99 %s ms  (memory tier disabled)\n' "$(lat "$TMP/hr.json" e2e_ms p50)" "$(lat "$TMP/hr.json" e2e_ms p99)"
    kill "$PID"
else
    echo "  Redis tier: skipped (redis-server not installed)"
fi
printf '  direct simulator for reference: E2E p50 %s ms  p99 %s ms\n' "$(lat "$TMP/d1.json" e2e_ms p50)" "$(lat "$TMP/d1.json" e2e_ms p99)"

echo "== 3. throughput at concurrency 32 (cache off; $DURATION each)"
for mode in --no-stream ""; do
    label=${mode:+non-streamed}; label=${label:-streamed}
    bench "$TMP/d32.json" --base-url "$SIM/v1" --model "$MODEL" $mode -c 32 --duration "$DURATION" --warmup 500
    bench "$TMP/g32.json" --base-url "$GW/v1" --model "$MODEL" $mode -c 32 --duration "$DURATION" --warmup 500 "${NOSTORE[@]}"
    d=$(rps "$TMP/d32.json"); g=$(rps "$TMP/g32.json")
    printf '  %-13s direct %7s req/s  gateway %7s req/s  ratio %.2f  (failed: %s / %s)\n' "$label" "$d" "$g" "$(python3 -c "print($g/$d)")" "$(failed "$TMP/d32.json")" "$(failed "$TMP/g32.json")"
done

echo "== 4. memory"
sleep 1
AFTER=$(rss_kib "$GW_PID")
printf '  gateway RSS idle %.1f MiB; after the load runs (cache off) %.1f MiB\n' "$(python3 -c "print($IDLE/1024)")" "$(python3 -c "print($AFTER/1024)")"
