"""The official `openai` and `anthropic` Python SDKs through `tokenpace serve` (in front of the
simulator): streamed and non-streamed calls, a cache miss then a hit, and the gateway's headers
read through the SDKs' raw-response API.
"""

from __future__ import annotations

MESSAGES = [{"role": "user", "content": "Why cache identical requests?"}]


def _requests_upstream(gw, model: str) -> int:
    by_model = gw.upstream.stats()["by_model"]
    return sum(by_model.get(model, {}).get("responses_by_status", {}).values())


def test_openai_chat_non_streaming_miss_then_hit(gateway):
    client = gateway.openai()
    model = "sim:tokens=6,seed=11"

    first = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)

    assert first.headers["x-tokenpace-cache"] == "miss"
    assert second.headers["x-tokenpace-cache"] == "hit"
    assert second.headers["x-tokenpace-upstream"] == "sim"
    assert int(second.headers["age"]) >= 0
    a, b = first.parse(), second.parse()
    assert a.choices[0].message.content == b.choices[0].message.content
    assert b.usage is not None and b.usage.completion_tokens == 6
    assert _requests_upstream(gateway, model) == 1


def test_openai_chat_streaming_miss_then_hit(gateway):
    client = gateway.openai()
    model = "sim:tokens=8,seed=12"

    def run() -> tuple[str, str | None, str]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, stream=True
        )
        text = ""
        finish = None
        for chunk in raw.parse():
            # A client that did not ask for usage must not get the usage-only chunk (choices=[]).
            assert chunk.choices, "usage chunk leaked to a client that did not ask for it"
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return text, finish, raw.headers["x-tokenpace-cache"]

    text1, finish1, cache1 = run()
    text2, finish2, cache2 = run()
    assert (cache1, cache2) == ("miss", "hit")
    assert text1 and text1 == text2
    assert finish1 == finish2 == "stop"
    assert _requests_upstream(gateway, model) == 1


def test_openai_stream_hit_from_non_streamed_entry_with_usage(gateway):
    client = gateway.openai()
    model = "sim:tokens=5,seed=13"
    plain = client.chat.completions.create(model=model, messages=MESSAGES)

    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert _requests_upstream(gateway, model) == 1


def test_anthropic_messages_non_streaming_miss_then_hit(gateway):
    client = gateway.anthropic()
    model = "sim:tokens=7,seed=14"

    first = client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=MESSAGES
    )
    second = client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=MESSAGES
    )
    assert first.headers["x-tokenpace-cache"] == "miss"
    assert second.headers["x-tokenpace-cache"] == "hit"
    a, b = first.parse(), second.parse()
    assert a.content[0].text == b.content[0].text
    assert b.usage.output_tokens == 7
    assert b.stop_reason == "end_turn"


def test_anthropic_messages_streaming_through_the_gateway(gateway):
    client = gateway.anthropic()
    model = "sim:tokens=9,seed=15"

    texts = []
    for _ in range(2):
        with client.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.usage.output_tokens == 9
        assert final.stop_reason == "end_turn"
        texts.append(text)
    assert texts[0] and texts[0] == texts[1]
    assert _requests_upstream(gateway, model) == 1
