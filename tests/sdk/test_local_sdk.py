"""The official `openai` Python SDK against `tokenpace serve-local`: a real model (SmolLM2-135M)
on the CPU. Skipped when the model is not installed, unless TOKENPACE_REQUIRE_MODEL=1.
"""

from __future__ import annotations

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 12


def test_streamed_chat_with_usage_matches_the_non_streamed_answer(serve_local):
    client = serve_local.openai(timeout=120.0)
    model = serve_local.model

    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert len(chunks) >= 4, chunks
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream shares its id"
    assert {c.model for c in chunks} == {model}
    *choice_chunks, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert all(len(c.choices) == 1 for c in choice_chunks)
    assert all(c.usage is None for c in choice_chunks)

    first = choice_chunks[0].choices[0]
    assert first.delta.role == "assistant"
    assert first.delta.content == ""
    finish = choice_chunks[-1].choices[0]
    assert finish.finish_reason in ("stop", "length")
    assert finish.delta.content is None
    text = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert text.strip(), "the model said something"

    usage = usage_chunk.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= MAX_TOKENS
    if finish.finish_reason == "length":
        assert usage.completion_tokens == MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0

    # Greedy decoding: the same request without streaming gives the same text and usage.
    completion = client.chat.completions.create(
        model=f"local:{model}", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == text
    assert completion.choices[0].finish_reason == finish.finish_reason
    assert completion.usage.prompt_tokens == usage.prompt_tokens
    assert completion.usage.completion_tokens == usage.completion_tokens


def test_unsupported_features_are_refused_as_bad_requests(serve_local):
    import openai
    import pytest

    client = serve_local.openai()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=serve_local.model, messages=MESSAGES, n=2)
    assert refused.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert missing.value.body["code"] == "model_not_found"
