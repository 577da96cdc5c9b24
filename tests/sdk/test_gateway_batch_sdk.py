"""The official `openai` Python SDK against the gateway's Files and Batch APIs
(`tokenpace serve` in front of the simulator, with its own data directory): upload a batch
input, create a batch, poll it to completion, download its output, and cancel a slow one.
"""

from __future__ import annotations

import io
import json
import time

import pytest

POLL_TIMEOUT_S = 30.0


def _lines(n: int, model: str) -> bytes:
    """`n` chat requests with distinct prompts (no cache hits, no coalescing)."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"line {i}"}]},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def _wait(client, batch_id: str, done) -> object:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} never got there: {batch}", pytrace=False)
        time.sleep(0.05)


def _output(client, file_id: str) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_files_create_then_a_batch_runs_to_completed(batch_gateway):
    client = batch_gateway.openai()
    content = _lines(10, "sim:tokens=3")

    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(content)), purpose="batch")
    assert uploaded.id.startswith("file-")
    assert uploaded.object == "file"
    assert uploaded.bytes == len(content)
    assert uploaded.filename == "requests.jsonl"
    assert uploaded.purpose == "batch"
    assert uploaded.status == "processed"
    assert client.files.retrieve(uploaded.id).bytes == len(content)
    assert [f.id for f in client.files.list()] == [uploaded.id]

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "sdk"},
    )
    assert batch.id.startswith("batch_")
    assert batch.object == "batch"
    assert batch.status in ("validating", "in_progress", "finalizing", "completed")
    assert batch.metadata == {"run": "sdk"}

    done = _wait(client, batch.id, lambda b: b.status == "completed")
    assert done.request_counts.total == 10
    assert done.request_counts.completed == 10
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    assert done.completed_at is not None and done.in_progress_at is not None

    output = client.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"
    lines = _output(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(10))
    for line in lines:
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["usage"]["completion_tokens"] == 3
        assert line["error"] is None
    assert [b.id for b in client.batches.list()] == [batch.id]

    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(Exception) as gone:
        client.files.retrieve(uploaded.id)
    assert getattr(gone.value, "status_code", None) == 404


def test_batches_cancel_keeps_the_finished_lines(batch_gateway):
    client = batch_gateway.openai()
    model = "sim:ttft=200ms,tokens=2"
    uploaded = client.files.create(
        file=("slow.jsonl", io.BytesIO(_lines(20, model))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    _wait(client, batch.id, lambda b: b.request_counts and b.request_counts.completed >= 2)

    cancelling = client.batches.cancel(batch.id)
    assert cancelling.id == batch.id
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None

    cancelled = _wait(client, batch.id, lambda b: b.status == "cancelled")
    finished = cancelled.request_counts.completed
    assert 2 <= finished < 20
    assert cancelled.cancelled_at is not None
    lines = _output(client, cancelled.output_file_id)
    assert len(lines) == finished
    assert all(line["response"]["status_code"] == 200 for line in lines)
    # Lines in flight at the cancel finished and were written; nothing else was sent.
    assert batch_gateway.upstream.model_stats(model)["requests_total"] == finished
