#!/usr/bin/env bash
# Performance and accuracy of `tokenpace bench`, printed as figures (not a test).
#
#   scripts/bench-perf.sh            # all figures
#   DURATION=5s scripts/bench-perf.sh
#
# 1. Ceiling: the most streamed requests/s (64 tokens each) bench drives against the
#    simulator with zero delays, and bench's own CPU use. The simulator runs as a separate
#    process on the same 2 cores, so the figure is a floor of what bench alone could do.
# 2. Accuracy: bench's reported TTFT and TPOT against the truth the simulator recorded
#    (its /stats emit times) for sim:ttft=50ms,itl=10ms,tokens=64 at concurrency 1 and 256.
# 3. Rate: achieved vs requested at 1,000 requests/s (constant arrivals).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
cargo build --release -p tokenpace >/dev/null 2>&1 || cargo build --release -p tokenpace
BIN=${CARGO_TARGET_DIR:-target}/release/tokenpace
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

start_sim() {
    "$BIN" sim --listen 127.0.0.1:0 >"$TMP/sim.out" 2>"$TMP/sim.err" &
    for _ in $(seq 100); do
        if [[ -s $TMP/sim.out ]]; then break; fi
        sleep 0.05
    done
    URL=$(head -n 1 "$TMP/sim.out" | sed 's/^listening on //')
}

stop_sim() {
    kill %1 2>/dev/null || true
    wait 2>/dev/null || true
    : >"$TMP/sim.out"
}

field() { # field FILE PYTHON-EXPR (r = the report, s = its first series)
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); s=r['series'][0]; print($2)" "$1"
}

echo "== 1. ceiling: streamed requests/s against the zero-delay simulator (64 tokens per request)"
for c in 32 64 128; do
    start_sim
    "$BIN" bench --quiet --base-url "$URL/v1" --model sim:tokens=64 --concurrency "$c" \
        --duration "$DURATION" --warmup 200 --json "$TMP/ceiling.json" >/dev/null || true
    rps=$(field "$TMP/ceiling.json" "round(s['throughput']['full']['requests_per_s'])")
    tps=$(field "$TMP/ceiling.json" "round(s['throughput']['full']['output_tokens_per_s'])")
    cpu=$(field "$TMP/ceiling.json" "round(100*(s['client']['cpu_share'] or 0))")
    fails=$(field "$TMP/ceiling.json" "s['requests']['failed']")
    printf '  concurrency %4s: %7s req/s  %9s tokens/s  bench CPU %3s%% of 2 cores  failed %s\n' "$c" "$rps" "$tps" "$cpu" "$fails"
    stop_sim
done

echo "== 2. accuracy: reported vs the simulator's recorded emit times (sim:ttft=50ms,itl=10ms,tokens=64)"
for c in 1 256; do
    n=$(( c == 1 ? 30 : 768 ))
    start_sim
    # Workers start spread over one inter-token interval: in lockstep, all 256 requests of
    # a round would queue in the client and the simulator on these 2 cores, and the
    # simulator's truth (measured from when it received each request) excludes that queue.
    "$BIN" bench --quiet --base-url "$URL/v1" --model sim:ttft=50ms,itl=10ms,tokens=64 --concurrency "$c" \
        --ramp-up 10ms --requests "$n" --warmup "$c" --json "$TMP/acc.json" >/dev/null || true
    curl -s "$URL/stats" >"$TMP/stats.json"
    stop_sim
    python3 - "$TMP/acc.json" "$TMP/stats.json" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); st = json.load(open(sys.argv[2])); c = sys.argv[3]
s = r['series'][0]['latency_ms']
e = st['emit']
# Truth: the simulator's TTFT (receipt to first token written) and gaps between tokens
# (TPOT = mean gap for one token per chunk). Warm-up requests are in the simulator's figures
# too; they follow the same profile.
for name, rep, truth in [("TTFT", s['ttft_ms'], e['ttft']), ("TPOT", s['tpot_ms'], e['gap']), ("ICL ", s['icl_ms'], e['gap'])]:
    d50 = rep['p50'] - truth['p50_ms']; d99 = rep['p99'] - truth['p99_ms']
    print(f"  concurrency {c:>3}: {name} p50 {rep['p50']:8.3f} ms (truth {truth['p50_ms']:8.3f}, diff {d50:+.3f})"
          f"   p99 {rep['p99']:8.3f} ms (truth {truth['p99_ms']:8.3f}, diff {d99:+.3f})")
PY
done

echo "== 3. rate: achieved vs requested 1000 req/s (constant arrivals, sim:tokens=16)"
start_sim
"$BIN" bench --quiet --base-url "$URL/v1" --model sim:tokens=16 --rate 1000 --arrival constant \
    --requests 5000 --json "$TMP/rate.json" >/dev/null || true
stop_sim
python3 - "$TMP/rate.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))['series'][0]
rate = s['rate']; lag = s['client']['schedule_lag_ms']
err = 100 * (rate['dispatched_per_s'] - rate['offered_per_s']) / rate['offered_per_s']
print(f"  offered {rate['offered_per_s']:.0f}/s, dispatched {rate['dispatched_per_s']:.1f}/s ({err:+.2f}%),"
      f" completed {rate['completed_per_s']:.1f}/s; schedule lag p50 {lag['p50']:.3f} ms p99 {lag['p99']:.3f} ms;"
      f" failed {s['requests']['failed']}")
PY
