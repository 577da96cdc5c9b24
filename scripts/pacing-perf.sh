#!/usr/bin/env bash
# Pacing of `tokenpace serve`, printed as figures (not a test). One load tool
# (`tokenpace bench`) drives the gateway in front of the simulator, on loopback.
#
#   scripts/pacing-perf.sh
#   NO_BUILD=1 scripts/pacing-perf.sh          # reuse target/release/tokenpace
#   WINDOW_S=10 TPM=60000 scripts/pacing-perf.sh
#
# 1. Tier utilisation: the simulator enforces TPM tokens per WINDOW_S-second window
#    (`tokenpace sim --window --tpm`), the gateway is told the same `tpm` and `window` for
#    that upstream, and bench drives it far above the tier (concurrency 64, sim:tokens=50,
#    --max-tokens 50, cache off) for WINDOWS + 1 windows. Printed, from the simulator's
#    /stats: the tokens it accepted per window over WINDOWS windows in the steady state, as a
#    % of the tier (goal >= 95%), and the 429s it sent (goal 0).
# 2. Latency added by admission under the limit: concurrency 1, the same gateway with a
#    generous limit configured vs without limits, end-to-end p50/p99 side by side (medians
#    of ROUNDS alternating runs of DURATION each).
#
# Everything shares this machine's cores (simulator, gateway, load generator).
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW_S=${WINDOW_S:-5}
WINDOWS=${WINDOWS:-4}
TPM=${TPM:-30000}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
# shellcheck source=perf-common.sh
source scripts/perf-common.sh

# bench OUT.json ARGS...: one quiet bench run.
bench() {
    local out=$1; shift
    "$BIN" bench --quiet --json "$out" "$@" >/dev/null || true
}

lat_median() { # lat_median METRIC PCT FILE...: the median over several runs
    python3 -c "
import json, statistics, sys
m, p = sys.argv[1], sys.argv[2]
print('%.3f' % statistics.median(json.load(open(f))['series'][0]['latency_ms'][m][p] for f in sys.argv[3:]))" "$@"
}
requests() { # requests FILE: "succeeded failed incomplete"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['series'][0]['requests']; print(r['succeeded'], r['failed'], r['incomplete'])" "$1"
}
# sim_counts URL: "TOKENS 200s 429s" (input + output tokens the simulator accepted).
sim_counts() {
    python3 -c "
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + '/stats'))
by = s['responses_by_status']
print(s['input_tokens_total'] + s['output_tokens_total'], by.get('200', 0), by.get('429', 0))" "$1"
}
# gw_metric URL NAME: the sum of every series of a counter on the gateway's /metrics.
gw_metric() {
    python3 -c "
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + '/metrics').read().decode()
total = 0.0
for line in text.splitlines():
    if line.startswith('#'):
        continue
    series, _, value = line.rpartition(' ')
    if series == sys.argv[2] or series.startswith(sys.argv[2] + '{'):
        total += float(value)
print('%g' % total)" "$1" "$2"
}
NOSTORE=(-H 'cache-control: no-store')

echo "== 1. tier utilisation (tier: $TPM tokens per ${WINDOW_S}s; $WINDOWS windows; concurrency 64; sim:tokens=50, max_tokens 50)"
start simt sim --listen 127.0.0.1:0 --window "${WINDOW_S}s" --tpm "$TPM"
SIMT=$URL
cat >"$TMP/paced.toml" <<TOML
[upstreams.sim]
url = "$SIMT"
tpm = $TPM
window = "${WINDOW_S}s"
[cache]
store = "memory"
TOML
start gwt serve --config "$TMP/paced.toml" --listen 127.0.0.1:0
GWT=$URL
# The gateway admits a tier's worth at the start of every window (a sliding window refills
# all at once), so the simulator's counters are read mid-window: after the first window's
# burst, and WINDOWS windows later. Bench runs on past the second reading.
RUN_S=$(python3 -c "print(($WINDOWS + 1) * $WINDOW_S)")
bench "$TMP/u.json" --base-url "$GWT/v1" --model sim:tokens=50 --max-tokens 50 --no-stream -c 64 --duration "${RUN_S}s" "${NOSTORE[@]}" &
BENCH=$!
sleep "$(python3 -c "print(0.5 * $WINDOW_S)")"
read -r T0 OK0 _ < <(sim_counts "$SIMT")
sleep "$(python3 -c "print($WINDOWS * $WINDOW_S)")"
read -r T1 OK1 _ < <(sim_counts "$SIMT")
wait "$BENCH"
read -r _ OK2 R429 < <(sim_counts "$SIMT")
read -r SUCC FAIL INC < <(requests "$TMP/u.json")
python3 -c "
tokens, windows, tier = $T1 - $T0, $WINDOWS, $TPM
per = tokens / windows
print('  accepted by the simulator over %d windows (read mid-window): %d tokens in %d requests = %.0f tokens per window = %.1f%% of the tier (goal >= 95%%)' % (windows, tokens, $OK1 - $OK0, per, 100.0 * per / tier))"
printf '  upstream 429s in the whole run: %s (goal 0); upstream 200s: %s\n' "$R429" "$OK2"
printf '  gateway: retries %s, pauses %s; bench: %s succeeded, %s failed, %s incomplete\n' \
    "$(gw_metric "$GWT" tokenpace_retries_total)" "$(gw_metric "$GWT" tokenpace_upstream_pauses_total)" "$SUCC" "$FAIL" "$INC"
echo "  (the gateway's window carries a guard of 2% (at most 250 ms) against network jitter, so over"
echo "   many windows it sends at most 98% of a short window's tier, 99.6% of a 60 s one)"

echo "== 2. latency added by admission under the limit (concurrency 1; cache off; sim:tokens=16; $ROUNDS x $DURATION each)"
start sim sim --listen 127.0.0.1:0
SIM=$URL
start gw0 serve --upstream "sim=$SIM" --listen 127.0.0.1:0 --cache memory
GW0=$URL
cat >"$TMP/generous.toml" <<TOML
[upstreams.sim]
url = "$SIM"
rpm = 100000000
tpm = 100000000000
window = "60s"
[cache]
store = "memory"
TOML
start gw1 serve --config "$TMP/generous.toml" --listen 127.0.0.1:0
GW1=$URL
MODEL=sim:tokens=16
# The two gateways take turns, ROUNDS times; each figure is the median over the rounds
# (other work on this machine moves single runs by tens of microseconds).
for mode in --no-stream ""; do
    label=${mode:+non-streamed}; label=${label:-streamed}
    for r in $(seq "$ROUNDS"); do
        bench "$TMP/n$r.json" --base-url "$GW0/v1" --model "$MODEL" $mode -c 1 --duration "$DURATION" --warmup 100 "${NOSTORE[@]}"
        bench "$TMP/l$r.json" --base-url "$GW1/v1" --model "$MODEL" $mode -c 1 --duration "$DURATION" --warmup 100 "${NOSTORE[@]}"
    done
    for p in p50 p99; do
        n=$(lat_median e2e_ms $p "$TMP"/n[0-9]*.json); l=$(lat_median e2e_ms $p "$TMP"/l[0-9]*.json)
        printf '  %-12s E2E %s: no limits %8s ms  generous limits %8s ms  added %+8.1f us\n' "$label" "$p" "$n" "$l" "$(python3 -c "print(($l-$n)*1000)")"
    done
    rm -f "$TMP"/n[0-9]*.json "$TMP"/l[0-9]*.json
done
printf '  admission decisions on the limited gateway: %s (all admitted without queueing: %s)\n' \
    "$(gw_metric "$GW1" tokenpace_admission_total)" \
    "$(python3 -c "
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + '/metrics').read().decode()
print(all(not (l.startswith('tokenpace_admission_total{') and 'result=\"admitted\"' not in l and not l.endswith(' 0')) for l in text.splitlines()))" "$GW1")"
