"""Fixtures for the SDK compatibility suite.

This suite owns one question: do the *official* OpenAI and Anthropic Python SDKs, unmodified,
work against `tokenpace sim`? Each test starts its own simulator process on port 0 (so tests
never share counters or rate-limit windows and never collide on a port), reads the address from
the first stdout line, and stops it with SIGTERM afterwards. The simulator's own behaviour is
tested in Rust under crates/sim; here we only speak through the SDKs and /stats.

The binary comes from $TOKENPACE_BIN, or target/debug/tokenpace under the repository root
($CARGO_TARGET_DIR/debug/tokenpace when that is set). Build it first: `cargo build -p tokenpace`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# How long the simulator may take to print its first line. A debug build starts in well under a
# second; the margin is for a machine that is busy compiling at the same time.
STARTUP_TIMEOUT_S = 15.0
# How long SIGTERM may take to stop it. Graceful shutdown with no open streams is immediate.
SHUTDOWN_TIMEOUT_S = 5.0
LISTENING_PREFIX = "listening on "

# Dummy credentials: the simulator accepts any key, and the SDKs refuse to start without one.
OPENAI_KEY = "sk-tokenpace-sdk-test"
ANTHROPIC_KEY = "sk-ant-tokenpace-sdk-test"


def tokenpace_bin() -> Path:
    explicit = os.environ.get("TOKENPACE_BIN")
    if explicit:
        return Path(explicit).resolve()
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = REPO_ROOT / target_dir
    return target_dir / "debug" / "tokenpace"


@dataclass
class Sim:
    """A running `tokenpace sim` process and how to talk to it."""

    url: str
    proc: subprocess.Popen
    args: list[str] = field(default_factory=list)

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.load(resp)

    def stats(self) -> dict:
        return self.get_json("/stats")

    def model_stats(self, model: str) -> dict:
        by_model = self.stats()["by_model"]
        assert model in by_model, f"/stats has no by_model entry for {model!r}: {sorted(by_model)}"
        return by_model[model]

    def openai(self, **kwargs):
        import openai

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10.0)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=OPENAI_KEY, **kwargs)

    def anthropic(self, **kwargs):
        import anthropic

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10.0)
        # The Anthropic SDK appends /v1/messages itself.
        return anthropic.Anthropic(base_url=self.url, api_key=ANTHROPIC_KEY, **kwargs)


def _start_sim(extra_args: list[str]) -> tuple[Sim, Callable[[], str | None]]:
    return _start_tokenpace(["sim", "--listen", "127.0.0.1:0", *extra_args])


def _start_tokenpace(
    sub_args: list[str], startup_timeout_s: float = STARTUP_TIMEOUT_S
) -> tuple[Sim, Callable[[], str | None]]:
    """Starts `tokenpace SUBCOMMAND ...` (sim, serve or serve-local) and waits for its address."""
    binary = tokenpace_bin()
    if not binary.is_file():
        pytest.fail(
            f"tokenpace binary not found at {binary}: run `cargo build -p tokenpace` "
            "or set TOKENPACE_BIN to the binary",
            pytrace=False,
        )
    args = [str(binary), *sub_args]
    # stderr goes to a file, not a pipe: nobody drains it while the test runs, and a full pipe
    # would block the simulator's logging. It is shown when startup fails.
    stderr_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        cwd=REPO_ROOT,
    )

    # A thread reads stdout: the first line goes to the queue (readline has no timeout of its
    # own), and the rest is drained so the simulator can never block on a full pipe.
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        first = True
        for line in proc.stdout:
            if first:
                lines.put(line)
                first = False
        if first:
            lines.put(None)  # EOF before any line: the process died.

    threading.Thread(target=pump, name="sim-stdout", daemon=True).start()

    def stderr_text() -> str:
        stderr_file.seek(0)
        return stderr_file.read().strip() or "(empty)"

    def stop() -> str | None:
        """Stops the simulator; returns what went wrong, if anything."""
        problem = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problem = f"`{' '.join(args)}` did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM"
        stderr_file.close()
        return problem

    try:
        first = lines.get(timeout=startup_timeout_s)
    except queue.Empty:
        first = ""
        problem = f"printed no line within {startup_timeout_s}s"
    else:
        problem = "exited before printing a line" if first is None else ""
    if first and not first.startswith(LISTENING_PREFIX):
        problem = f"printed {first!r} as its first line, expected '{LISTENING_PREFIX}http://ADDR'"
    if problem:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        message = (
            f"`{' '.join(args)}` {problem} (exit status: {proc.returncode}).\n"
            f"stderr:\n{stderr_text()}"
        )
        stderr_file.close()
        pytest.fail(message, pytrace=False)

    url = first[len(LISTENING_PREFIX) :].strip().rstrip("/")
    return Sim(url=url, proc=proc, args=args), stop


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Sim]]:
    """Factory: `start_sim("--rpm", "2")` starts a simulator with extra flags for this test."""
    stops: list[Callable[[], str | None]] = []

    def start(*extra_args: str) -> Sim:
        sim, stop = _start_sim(list(extra_args))
        stops.append(stop)
        return sim

    yield start
    problems = [p for p in (stop() for stop in reversed(stops)) if p]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def sim(start_sim) -> Sim:
    """A simulator with default flags (unlimited tier)."""
    return start_sim()


@pytest.fixture
def gateway(sim) -> Iterator[Sim]:
    """`tokenpace serve` in front of a fresh simulator, with the in-memory cache.

    Its `upstream` attribute is the simulator, for counting upstream requests in /stats.
    """
    gw, stop = _start_tokenpace(
        ["serve", "--upstream", f"sim={sim.url}", "--listen", "127.0.0.1:0", "--cache", "memory"]
    )
    gw.upstream = sim  # type: ignore[attr-defined]
    yield gw
    problem = stop()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def batch_gateway(sim, tmp_path) -> Iterator[Sim]:
    """`tokenpace serve` in front of a fresh simulator with its own data directory, for
    `/v1/files` and `/v1/batches`: a temporary `--config` gives `data_dir` (under pytest's
    `tmp_path`, so no test touches the user's real one) and few requests in flight per batch,
    so a batch of slow lines can be cancelled half-way.

    Its `upstream` attribute is the simulator; `data_dir` is the data directory.
    """
    data_dir = tmp_path / "gateway-data"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n\n'
        f'[upstreams.sim]\nurl = "{sim.url}"\n\n'
        '[cache]\nstore = "memory"\n\n'
        "[batches]\nconcurrency = 2\n"
    )
    gw, stop = _start_tokenpace(["serve", "--config", str(config), "--listen", "127.0.0.1:0"])
    gw.upstream = sim  # type: ignore[attr-defined]
    gw.data_dir = data_dir  # type: ignore[attr-defined]
    yield gw
    problem = stop()
    if problem:
        pytest.fail(problem, pytrace=False)


# Loading the local model (with its checksum) takes about a second; the margin is for a busy
# machine and a debug build.
LOCAL_STARTUP_TIMEOUT_S = 60.0


def _local_model_problem(name: str) -> str | None:
    """Why `tokenpace serve-local --model NAME` cannot start (None when the model is installed),
    asked of the binary itself (`model list --json`), so the answer follows the same model
    directory rules (TOKENPACE_MODEL_DIR, XDG cache) as serve-local."""
    binary = tokenpace_bin()
    if not binary.is_file():
        return None  # _start_tokenpace reports the missing binary.
    listed = subprocess.run(
        [str(binary), "model", "list", "--json"], capture_output=True, text=True, timeout=30
    )
    if listed.returncode != 0:
        return f"`tokenpace model list --json` failed: {listed.stderr.strip()}"
    for model in json.loads(listed.stdout).get("models", []):
        if model.get("name") == name:
            if model.get("status") == "installed":
                return None
            status = str(model.get("status", "missing")).replace("_", " ")
            return f"{name} is {status}: run `{model.get('pull_command')}`"
    return f"tokenpace does not know a model called {name}"


@pytest.fixture
def serve_local() -> Iterator[Sim]:
    """`tokenpace serve-local --model smollm2` on port 0. Skips when SmolLM2 is not installed,
    unless TOKENPACE_REQUIRE_MODEL=1 (scripts/test.sh pulls it first), which makes that a failure.

    Its `model` attribute is the served model's name.
    """
    problem = _local_model_problem("smollm2")
    if problem:
        if os.environ.get("TOKENPACE_REQUIRE_MODEL") == "1":
            pytest.fail(f"TOKENPACE_REQUIRE_MODEL=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    server, stop = _start_tokenpace(
        ["serve-local", "--model", "smollm2", "--listen", "127.0.0.1:0"],
        startup_timeout_s=LOCAL_STARTUP_TIMEOUT_S,
    )
    server.model = "smollm2"  # type: ignore[attr-defined]
    yield server
    problem = stop()
    if problem:
        pytest.fail(problem, pytrace=False)


class _RecordingTime:
    """Stands in for the `time` module inside an SDK: `sleep` is recorded, not slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def retry_sleeps(monkeypatch) -> list[float]:
    """The back-off delays the SDKs chose between retries, in order, without waiting for them.

    The SDKs honour `retry-after` (a 429 from the simulator says 1 s); sleeping for real would
    make each retry test take seconds. Recording the delays instead also lets tests check that
    the SDK read the simulator's header. Both SDKs call `time.sleep` from `_base_client`; if a
    future SDK moves it, monkeypatch raises here rather than the test silently sleeping.
    """
    import anthropic._base_client
    import openai._base_client

    fake = _RecordingTime()
    monkeypatch.setattr(openai._base_client, "time", fake)
    monkeypatch.setattr(anthropic._base_client, "time", fake)
    return fake.sleeps
