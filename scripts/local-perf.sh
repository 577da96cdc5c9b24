#!/usr/bin/env bash
# The local engine side by side with llama.cpp's own server, on the same cores (benchmark, not a
# test: it prints figures). Both servers are measured by `tokenpace bench` over loopback:
#   prefill tokens/s = prompt tokens / TTFT, for ~500-token prompts that differ from their first
#     token (llama.cpp's server reuses the KV cache of a prefix shared with the previous request:
#     distinct synthetic prompts keep every measurement cold);
#   decode tokens/s  = 1 / TPOT, for 128 generated tokens.
# Rows: tokenpace serve-local on each of its engines (`--engine candle`, and `--engine llama-cpp`:
# llama.cpp in-process through the `llama` cargo feature, with our tokenizer and sampling), both on
# the Q8_0 file made at pull time; then llama.cpp's server on the original Q4_1 file and on the
# same Q8_0 file.
#
# The reference llama.cpp server comes from the llama-cpp-python package, which compiles llama.cpp
# (a few minutes, with -DGGML_NATIVE=ON) into its own virtualenv under target/ the first time.
# The `llama` feature compiles llama.cpp for x86-64-v3 (.cargo/config.toml), also a few minutes
# the first time; it needs cmake and libclang-dev.
#
# Environment: NO_BUILD=1 reuses target/release/tokenpace (which must then have been built with
# `--features llama` unless ENGINES=candle); THREADS (default 2); RUNS (default 5);
# ENGINES, the serve-local engines to measure (default "candle llama-cpp"; "candle" alone builds
# without the feature, so without cmake).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
RUNS=${RUNS:-5}
ENGINES=${ENGINES:-candle llama-cpp}
for engine in $ENGINES; do
    case $engine in
        candle) ;;
        llama-cpp) BUILD_FEATURES=llama ;;
        *) echo "ENGINES: unknown engine '$engine' (use candle and/or llama-cpp)" >&2; exit 2 ;;
    esac
done
# shellcheck source=perf-common.sh
source scripts/perf-common.sh
VENV=target/llama-cpp-venv

"$BIN" model pull smollm2 >/dev/null
DIR=$("$BIN" model list --json | python3 -c "import json,sys; m=[m for m in json.load(sys.stdin)['models'] if m['name']=='smollm2'][0]; print(m['path'])")
Q8=$(ls "$DIR"/*.Q8_0.gguf)
Q41=$(ls "$DIR"/*.Q4_1.gguf)

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    echo "installing llama-cpp-python (compiles llama.cpp; a few minutes) into $VENV"
    python3 -m venv "$VENV"
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/python" -m pip install --quiet 'llama-cpp-python[server]'
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_llama() { # start_llama GGUF
    local port; port=$(free_port)
    "$VENV/bin/python" -m llama_cpp.server --model "$1" --host 127.0.0.1 --port "$port" \
        --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx 2048 --model_alias smollm2 \
        >"$TMP/llama.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    URL=http://127.0.0.1:$port
    for _ in $(seq 600); do
        if curl -sf "$URL/v1/models" >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    echo "llama.cpp server did not start:"; cat "$TMP/llama.log"; exit 1
}

measure() { # measure LABEL URL -> prints one row, sets PREFILL and DECODE
    local label=$1 url=$2
    # Warm-up request, then prefill: distinct ~500-token prompts, one output token.
    "$BIN" bench --quiet --base-url "$url/v1" --model smollm2 --runs 1 --max-tokens 4 >/dev/null 2>&1 || true
    "$BIN" bench --quiet --base-url "$url/v1" --model smollm2 --runs "$RUNS" --input-tokens 500 \
        --max-tokens 1 --json "$TMP/prefill.json" >/dev/null || true
    "$BIN" bench --quiet --base-url "$url/v1" --model smollm2 --runs "$RUNS" --max-tokens 128 \
        --prompt "Write a long story about a lighthouse keeper who finds a message in a bottle." \
        --json "$TMP/decode.json" >/dev/null || true
    read -r PREFILL DECODE < <(python3 - "$TMP/prefill.json" "$TMP/decode.json" "$label" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))['series'][0]
d = json.load(open(sys.argv[2]))['series'][0]
n = p['requests']['succeeded']
tokens_in = p['tokens']['input'] / max(n, 1)
ttft = p['latency_ms']['ttft_ms']['p50']
tpot = d['latency_ms']['tpot_ms']['p50']
out = d['tokens']['output'] / max(d['requests']['succeeded'], 1)
prefill = tokens_in / (ttft / 1000)
decode = 1000 / tpot
print(f"{prefill:.1f} {decode:.1f}")
print(f"  {sys.argv[3]:<34} prefill {prefill:7.1f} tok/s ({tokens_in:.0f}-token prompt, TTFT p50 {ttft:7.1f} ms)"
      f"   decode {decode:6.1f} tok/s (TPOT p50 {tpot:6.2f} ms, {out:.0f} tokens)", file=sys.stderr)
PY
    )
}

echo "== local engine vs llama.cpp: SmolLM2-135M, $THREADS threads, $RUNS runs each, this machine's cores"
OURS=()
for engine in $ENGINES; do
    start serve serve-local --model smollm2 --engine "$engine" --threads "$THREADS" --listen 127.0.0.1:0
    measure "tokenpace serve-local ($engine, Q8_0)" "$URL"
    OURS+=("$engine" "$PREFILL" "$DECODE")
    kill "$PID"; wait "$PID" 2>/dev/null || true
done

start_llama "$Q41"
measure "llama.cpp server (Q4_1, original)" "$URL"
Q41_PREFILL=$PREFILL Q41_DECODE=$DECODE
kill "$PID"; wait "$PID" 2>/dev/null || true

start_llama "$Q8"
measure "llama.cpp server (Q8_0, same file)" "$URL"
Q8_PREFILL=$PREFILL Q8_DECODE=$DECODE
kill "$PID"; wait "$PID" 2>/dev/null || true

python3 - "$Q41_PREFILL" "$Q41_DECODE" "$Q8_PREFILL" "$Q8_DECODE" "${OURS[@]}" <<'PY'
import sys
p41, d41, p8, d8 = map(float, sys.argv[1:5])
ours = sys.argv[5:]
print("== ratios of serve-local's engines to llama.cpp's server (goal: at least 0.75)")
for i in range(0, len(ours), 3):
    engine, p, d = ours[i], float(ours[i + 1]), float(ours[i + 2])
    print(f"  {engine:<10} vs llama.cpp Q4_1: prefill {p/p41:.2f}  decode {d/d41:.2f}")
    print(f"  {engine:<10} vs llama.cpp Q8_0: prefill {p/p8:.2f}  decode {d/d8:.2f}")
PY
