"""The official `anthropic` Python SDK against `tokenpace sim` (POST /v1/messages)."""

from __future__ import annotations

import anthropic
import pytest

MESSAGES = [{"role": "user", "content": "Say something about latency."}]


def test_messages_create_non_streaming(sim):
    client = sim.anthropic()
    model = "sim:tokens=5"

    message = client.messages.create(model=model, max_tokens=100, messages=MESSAGES)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert message.id.startswith("msg_")
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    assert block.text.strip()
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 5

    stats = sim.model_stats(model)
    assert stats["responses_by_status"] == {"200": 1}
    assert stats["output_tokens_total"] == 5


def test_messages_create_stops_at_max_tokens(sim):
    client = sim.anthropic()

    message = client.messages.create(model="sim:tokens=10", max_tokens=4, messages=MESSAGES)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert message.content[0].type == "text"
    assert message.content[0].text.strip()


def test_messages_stream_text(sim):
    client = sim.anthropic()
    model = "sim:tokens=6"

    with client.messages.stream(model=model, max_tokens=100, messages=MESSAGES) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert streamed.strip()
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == streamed
    assert final.model == model
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens == 6
    assert sim.model_stats(model)["output_tokens_total"] == 6


def test_messages_raw_stream_event_order(sim):
    client = sim.anthropic()

    events = list(
        client.messages.create(model="sim:tokens=3", max_tokens=100, messages=MESSAGES, stream=True)
    )

    # ping may appear anywhere (as with the real API); the rest follows the documented order.
    kinds = [e.type for e in events if e.type != "ping"]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == 3


def test_messages_stream_thinking(sim):
    client = sim.anthropic()

    with client.messages.stream(
        model="sim:tokens=4,reasoning=3",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=MESSAGES,
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking, text = final.content
    assert thinking.thinking.strip()
    assert thinking.signature
    assert text.text == streamed
    assert streamed.strip()
    assert final.stop_reason == "end_turn"
    # Anthropic bills thinking as output: 3 reasoning tokens + 4 visible ones.
    assert final.usage.output_tokens == 7


def test_overloaded_529_is_retried(sim, retry_sleeps):
    model = "sim:tokens=3,fail_first=1,fail_status=529"
    client = sim.anthropic(max_retries=1)

    message = client.messages.create(model=model, max_tokens=100, messages=MESSAGES)

    assert message.usage.output_tokens == 3
    assert len(retry_sleeps) == 1, "one failed attempt, one back-off"
    stats = sim.model_stats(model)
    assert stats["responses_by_status"] == {"529": 1, "200": 1}
    assert stats["faults_injected"] == 1


def test_overloaded_529_without_retries_raises(sim, retry_sleeps):
    client = sim.anthropic(max_retries=0)

    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(
            model="sim:fail_first=1,fail_status=529", max_tokens=100, messages=MESSAGES
        )

    assert caught.value.status_code == 529
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert retry_sleeps == []
