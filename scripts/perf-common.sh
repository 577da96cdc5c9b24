# Shared by the perf scripts (sourced, not run): build the release binary unless NO_BUILD is
# set, a temporary directory removed at exit, and `start NAME ARGS...`, which runs
# `tokenpace ARGS` in the background, waits for its `listening on` line and sets URL and PID.
# Every process started this way is killed at exit. BUILD_FEATURES (set by the script before
# sourcing this) adds cargo features to that build, e.g. `llama`.
BUILD_ARGS=(--release -p tokenpace ${BUILD_FEATURES:+--features "$BUILD_FEATURES"})
if [[ -z ${NO_BUILD:-} ]]; then cargo build "${BUILD_ARGS[@]}" >/dev/null 2>&1 || cargo build "${BUILD_ARGS[@]}"; fi
BIN=${CARGO_TARGET_DIR:-target}/release/tokenpace
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

start() {
    local name=$1; shift
    "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 200); do
        if [[ -s $TMP/$name.out ]]; then break; fi
        sleep 0.05
    done
    URL=$(head -n 1 "$TMP/$name.out" | sed 's/^listening on //')
    if [[ -z $URL ]]; then echo "$name did not start:"; cat "$TMP/$name.err"; exit 1; fi
}
