#!/usr/bin/env bash
# Performance of `tokenpace batch run`, printed as figures (not a test).
#
#   scripts/batch-perf.sh                 # builds the release binary first
#   NO_BUILD=1 scripts/batch-perf.sh      # reuse target/release/tokenpace
#
# 1. Memory is flat in the number of lines: peak RSS and lines/s of a 5,000-line and a
#    50,000-line batch against the simulator with zero delays and no tier limit (distinct
#    prompts, so nothing comes from the cache).
# 2. Tier use: a batch against a simulator tier with a 5 s window (tokens per window T) and
#    a gateway config with the same limit: the share of the tier's tokens used while the
#    batch ran, and the upstream 429s (goal: >= 95% and 0).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${NO_BUILD:-} ]]; then cargo build --release -p tokenpace >/dev/null 2>&1 || cargo build --release -p tokenpace; fi
BIN=${CARGO_TARGET_DIR:-target}/release/tokenpace
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

start_sim() { # start_sim ARGS...: sets SIM
    "$BIN" sim --listen 127.0.0.1:0 "$@" >"$TMP/sim.out" 2>"$TMP/sim.err" &
    PIDS+=("$!")
    for _ in $(seq 200); do [[ -s $TMP/sim.out ]] && break; sleep 0.05; done
    SIM=$(head -n 1 "$TMP/sim.out" | sed 's/^listening on //')
    : >"$TMP/sim.out"
}

lines() { # lines N MODEL MAX_TOKENS > file
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
n, model, max_tokens = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    print(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": model, "max_tokens": max_tokens,
                               "messages": [{"role": "user", "content": f"Question number {i}: why batch?"}]}}))
PY
}

echo "== 1. memory and speed (simulator with zero delays; sim:tokens=16; concurrency 64)"
start_sim
for n in 5000 50000; do
    lines "$n" sim:tokens=16 16 >"$TMP/in-$n.jsonl"
    /usr/bin/time -f '%M %e' -o "$TMP/time-$n" "$BIN" batch run "$TMP/in-$n.jsonl" --output "$TMP/out-$n.jsonl" \
        --base-url "$SIM" --concurrency 64 --quiet --json "$TMP/sum-$n.json" || true
    read -r rss secs <"$TMP/time-$n"
    python3 - "$TMP/sum-$n.json" "$n" "$rss" "$secs" "$TMP/out-$n.jsonl" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); n = int(sys.argv[2]); rss = int(sys.argv[3]); secs = float(sys.argv[4])
out = sum(1 for _ in open(sys.argv[5]))
print(f"  {n:>6} lines: peak RSS {rss/1024:6.1f} MiB, {n/s['wall_time_s']:8.0f} lines/s "
      f"(wall {s['wall_time_s']:.2f} s, process {secs:.2f} s), succeeded {s['counts']['succeeded']}, "
      f"failed {s['counts']['failed']}, output lines {out}, speedup over sequential {s['speedup'] or 0:.1f}x")
PY
done
# The same 50,000 lines with the response cache off: the memory tier (bounded by
# memory_max_bytes, 64 MiB by default) is the only thing above that grows with the lines.
printf '[upstreams.sim]\nurl = "%s"\n[cache]\nenabled = false\n' "$SIM" >"$TMP/nocache.toml"
/usr/bin/time -f '%M %e' -o "$TMP/time-nc" "$BIN" batch run "$TMP/in-50000.jsonl" --output "$TMP/out-nc.jsonl" \
    --config "$TMP/nocache.toml" --concurrency 64 --quiet || true
read -r rss secs <"$TMP/time-nc"
printf '   50000 lines, cache off: peak RSS %6.1f MiB (%s s)\n' "$(python3 -c "print($rss/1024)")" "$secs"
kill "${PIDS[-1]}" 2>/dev/null || true

echo "== 2. tier use (tier: 20000 tokens per 5 s window; sim:tokens=50, max_tokens 50)"
TPM=20000
start_sim --window 5s --tpm "$TPM"
cat >"$TMP/gw.toml" <<TOML
[upstreams.sim]
url = "$SIM"
tpm = $TPM
window = "5s"
[cache]
store = "memory"
TOML
# About 5 windows of work (each line: its input, ~15 tokens, + 50 output tokens). The share
# is measured between the middle of the first window and the middle of the fourth, where a
# saturated tier accepts exactly 3 windows' worth: reading at the end instead would count
# the burst of the first window and the tail of the last.
lines 1600 sim:tokens=50 50 >"$TMP/tier.jsonl"
tokens_now() { curl -s "$SIM/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["input_tokens_total"]+s["output_tokens_total"])'; }
"$BIN" batch run "$TMP/tier.jsonl" --output "$TMP/tier-out.jsonl" --config "$TMP/gw.toml" \
    --concurrency 64 --quiet --json "$TMP/tier-sum.json" &
BATCH=$!
until [[ $(tokens_now) -gt 0 ]]; do sleep 0.01; done
T0=$(date +%s.%N)
sleep_until() { python3 -c "import time,sys; d=float(sys.argv[1])-time.time(); time.sleep(max(0,d))" "$1"; }
sleep_until "$(python3 -c "print($T0 + 2.5)")"; A=$(tokens_now)
sleep_until "$(python3 -c "print($T0 + 17.5)")"; B=$(tokens_now)
wait "$BATCH" || true
curl -s "$SIM/stats" >"$TMP/stats.json"
python3 - "$TMP/tier-sum.json" "$TMP/stats.json" "$TPM" "$A" "$B" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); st = json.load(open(sys.argv[2])); tpm = int(sys.argv[3])
a, b = int(sys.argv[4]), int(sys.argv[5])
print(f"  {s['counts']['succeeded']} lines succeeded, {s['counts']['failed']} failed in {s['wall_time_s']:.1f} s")
print(f"  tokens accepted upstream from mid-window 1 to mid-window 4: {b - a} = {100*(b - a)/(3*tpm):.1f}% of 3 x {tpm} (goal >= 95%)")
print(f"  upstream 429s: {st['responses_by_status'].get('429', 0)} (goal 0)")
PY
