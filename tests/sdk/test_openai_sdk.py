"""The official `openai` Python SDK against `tokenpace sim`.

Model names choose the simulator's behaviour (`sim:tokens=N,...`); the zero-delay `sim` profile
keeps every test fast.
"""

from __future__ import annotations

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say something about latency."}]


def test_chat_completion_non_streaming(sim):
    client = sim.openai()
    model = "sim:tokens=5"

    completion = client.chat.completions.create(model=model, messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == model
    assert completion.id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    stats = sim.model_stats(model)
    assert stats["responses_by_status"] == {"200": 1}
    assert stats["output_tokens_total"] == 5
    assert stats["input_tokens_total"] == usage.prompt_tokens


@pytest.mark.parametrize("limit_param", ["max_tokens", "max_completion_tokens"])
def test_chat_completion_cut_by_token_limit(sim, limit_param):
    client = sim.openai()

    completion = client.chat.completions.create(
        model="sim:tokens=10", messages=MESSAGES, **{limit_param: 3}
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_chat_completion_streaming_with_usage(sim):
    client = sim.openai()
    model = "sim:tokens=7"

    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert len(chunks) >= 3
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream shares its id"
    assert {c.model for c in chunks} == {model}

    *content_chunks, usage_chunk = chunks
    # The final chunk carries usage and no choices; every earlier one has choices and no usage.
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert all(c.usage is None for c in content_chunks)
    assert all(len(c.choices) == 1 for c in content_chunks)

    deltas = [c.choices[0].delta for c in content_chunks]
    assert deltas[0].role == "assistant"
    pieces = [d.content for d in deltas if d.content]
    text = "".join(pieces)
    assert text.strip()
    # One token per chunk unless the model name asks for `chunk=K`.
    assert len(pieces) == 7

    finish_reasons = [c.choices[0].finish_reason for c in content_chunks]
    assert finish_reasons[-1] == "stop"
    assert all(r is None for r in finish_reasons[:-1])

    usage = usage_chunk.usage
    assert usage.completion_tokens == 7
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert sim.model_stats(model)["output_tokens_total"] == 7


def test_chat_completion_streaming_without_usage(sim):
    client = sim.openai()

    chunks = list(
        client.chat.completions.create(model="sim:tokens=4", messages=MESSAGES, stream=True)
    )

    assert chunks
    assert all(c.usage is None for c in chunks), "usage was not asked for"
    assert all(len(c.choices) == 1 for c in chunks), "no usage-only chunk without include_usage"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_completion_stream_chunking(sim):
    client = sim.openai()

    chunks = list(
        client.chat.completions.create(
            model="sim:tokens=6,chunk=3",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 2, f"6 tokens in chunks of 3, got {pieces!r}"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_legacy_completion(sim):
    client = sim.openai()
    model = "sim:tokens=5"

    completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16)

    assert completion.object == "text_completion"
    assert completion.model == model
    assert len(completion.choices) == 1
    assert completion.choices[0].text.strip()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens > 0


def test_models_list(sim):
    client = sim.openai()

    ids = [m.id for m in client.models.list()]

    assert "sim-mini" in ids
    assert {"sim", "sim-large"} <= set(ids)


def test_retries_429_then_succeeds(sim, retry_sleeps):
    model = "sim:tokens=3,fail_first=2,fail_status=429"
    client = sim.openai(max_retries=2)

    completion = client.chat.completions.create(model=model, messages=MESSAGES)

    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    # The SDK waited as the simulator's `retry-after: 1` told it, once per failed attempt.
    assert retry_sleeps == [1.0, 1.0]
    stats = sim.model_stats(model)
    assert stats["responses_by_status"] == {"429": 2, "200": 1}
    assert stats["requests_total"] == 3
    assert stats["faults_injected"] == 2


def test_429_without_retries_raises_rate_limit_error(sim, retry_sleeps):
    model = "sim:tokens=3,fail_first=2,fail_status=429"
    client = sim.openai(max_retries=0)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=MESSAGES)

    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "1"
    assert retry_sleeps == []
    assert sim.model_stats(model)["responses_by_status"] == {"429": 1}


def test_tier_rpm_limit(start_sim):
    sim = start_sim("--rpm", "2", "--window", "60s")
    client = sim.openai(max_retries=0)
    model = "sim"

    remaining = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        assert raw.status_code == 200
        assert raw.parse().choices[0].message.content
        assert raw.headers.get("x-ratelimit-limit-requests") == "2"
        remaining.append(raw.headers.get("x-ratelimit-remaining-requests"))
    assert remaining == ["1", "0"]

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=MESSAGES)

    headers = caught.value.response.headers
    assert "retry-after" in headers
    assert 0 < float(headers["retry-after"]) <= 60
    assert headers.get("x-ratelimit-limit-requests") == "2"
    assert headers.get("x-ratelimit-remaining-requests") == "0"
    assert caught.value.code == "rate_limit_exceeded"
    assert sim.model_stats(model)["responses_by_status"] == {"200": 2, "429": 1}
