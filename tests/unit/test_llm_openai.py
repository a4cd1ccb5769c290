"""OpenAiLlm (streamed turns over httpx, JSON completions over the openai SDK) against local OpenAI-compatible
servers, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from providers.llm.base import (
    LlmDone,
    LlmError,
    LlmEvent,
    LlmProvider,
    TextDelta,
    ToolCallEvent,
    UsageEvent,
)
from providers.llm.openai import OpenAiLlm, estimate_prompt_tokens, estimate_tokens
from tests.fakes.openai import FakeOpenAI, Text, ToolCall, ToolCalls
from tests.fakes.server import Fault, LocalServer, end_stream, read_body, send_chunk, start_stream

MESSAGES = [
    {"role": "system", "content": "You are a booking assistant."},
    {"role": "user", "content": "Can I book a table for two tonight?"},
]
BOOK_TOOL = {
    "type": "function",
    "function": {
        "name": "book_table",
        "parameters": {
            "type": "object",
            "properties": {"people": {"type": "integer"}, "time": {"type": "string"}},
        },
    },
}


@contextlib.asynccontextmanager
async def serve(fake: FakeOpenAI, **llm_options: float) -> AsyncIterator[OpenAiLlm]:
    async with LocalServer(fake) as srv, httpx.AsyncClient() as http:
        llm = OpenAiLlm(
            "test-key", base_url=f"{srv.http_url}/v1", model="gpt-4o-mini", http_client=http, **llm_options
        )
        try:
            yield llm
        finally:
            await llm.aclose()


async def drain(stream: AsyncIterator[LlmEvent]) -> list[LlmEvent]:
    async with asyncio.timeout(10):
        return [event async for event in stream]


async def test_streamed_text_arrives_in_pieces_then_usage_then_done() -> None:
    fake = FakeOpenAI(replies=["Of course! What time would you like?"])
    async with serve(fake) as llm:
        events = await drain(llm.stream_chat(MESSAGES, temperature=0.3, max_tokens=200))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == "Of course! What time would you like?"
    usage = events[-2]
    assert isinstance(usage, UsageEvent) and usage.model == "gpt-4o-mini"
    assert usage.completion_tokens == len(deltas) and usage.prompt_tokens > 0
    assert events[-1] == LlmDone(finish_reason="stop")
    sent = fake.chat_requests()[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == MESSAGES
    assert sent["temperature"] == 0.3 and sent["max_completion_tokens"] == 200


async def test_tool_call_deltas_are_assembled_into_complete_calls() -> None:
    reply = ToolCalls(
        [
            ToolCall("book_table", {"people": 2, "time": "20:00"}, id="call_1"),
            ToolCall("send_sms", {"to": "+15551234567", "text": "Booked"}, id="call_2"),
        ],
        text="Let me book that.",
    )
    fake = FakeOpenAI(replies=[reply])
    async with serve(fake) as llm:
        events = await drain(llm.stream_chat(MESSAGES, tools=[BOOK_TOOL]))

    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name) for c in calls] == [("call_1", "book_table"), ("call_2", "send_sms")]
    assert msgspec.json.decode(calls[0].arguments) == {"people": 2, "time": "20:00"}
    assert msgspec.json.decode(calls[1].arguments) == {"to": "+15551234567", "text": "Booked"}
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me book that."
    assert isinstance(events[-2], UsageEvent)
    assert events[-1] == LlmDone(finish_reason="tool_calls")
    assert fake.chat_requests()[0].json["tools"] == [BOOK_TOOL]


async def test_cancelled_stream_reports_no_usage_and_the_caller_estimates() -> None:
    fake = FakeOpenAI(replies=["one two three four five six seven eight nine ten"], inter_token_delay=0.05)
    async with serve(fake) as llm:
        stream = llm.stream_chat(MESSAGES)
        heard: list[LlmEvent] = []
        async for event in stream:
            heard.append(event)
            if len(heard) == 3:
                break
        await stream.aclose()  # barge-in: the turn is cancelled
        await asyncio.sleep(0.2)

    assert all(isinstance(e, TextDelta) for e in heard)
    spoken = "".join(e.text for e in heard if isinstance(e, TextDelta))
    assert spoken == "one two three"
    assert fake.chat_requests()[0].disconnected is True
    assert estimate_tokens(spoken) == 4 and estimate_tokens("") == 0
    assert 20 <= estimate_prompt_tokens(MESSAGES) <= 40


async def test_the_estimate_is_the_providers_own() -> None:
    """The neutral engine meters a cancelled stream through `LlmProvider.estimate_usage`: OpenAI's estimate."""
    llm: LlmProvider = OpenAiLlm("test-key", base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini")
    try:
        usage = llm.estimate_usage(MESSAGES, tools=[BOOK_TOOL], completion="one two three", model="gpt-4o")
        default = llm.estimate_usage(MESSAGES, tools=None, completion="")
    finally:
        await llm.aclose()
    assert usage == UsageEvent(
        prompt_tokens=estimate_prompt_tokens(MESSAGES, [BOOK_TOOL]),
        completion_tokens=estimate_tokens("one two three"),
        model="gpt-4o",
    )
    assert usage.prompt_tokens > default.prompt_tokens  # the tools' schemas are part of the prompt
    assert default.completion_tokens == 0 and default.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("fault", "status", "retryable"), [(Fault.http(500), 500, True), (Fault.http(429), 429, True)]
)
async def test_http_errors_map_to_llm_error(fault: Fault, status: int, retryable: bool) -> None:
    fake = FakeOpenAI(replies=[fault])
    async with serve(fake) as llm:
        with pytest.raises(LlmError) as info:
            await drain(llm.stream_chat(MESSAGES))
    assert info.value.status == status and info.value.retryable is retryable
    assert len(fake.chat_requests()) == 1  # conversation turns never retry


async def test_bad_key_is_not_retryable() -> None:
    async with serve(FakeOpenAI(api_key="another-key")) as llm:
        with pytest.raises(LlmError) as info:
            await drain(llm.stream_chat(MESSAGES))
    assert info.value.status == 401 and info.value.retryable is False


@pytest.mark.parametrize("after_chunks", [0, 2])
async def test_a_hanging_server_times_out(after_chunks: int) -> None:
    fake = FakeOpenAI(replies=[Fault.hang(after_chunks)])
    async with serve(fake, stream_read_timeout=0.3) as llm:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LlmError) as info:
            await drain(llm.stream_chat(MESSAGES))
        elapsed = loop.time() - started
    assert info.value.retryable is True and "timed out" in str(info.value)
    assert 0.25 <= elapsed < 2.0


async def test_a_stream_cut_mid_way_raises_after_the_text_so_far() -> None:
    async with serve(FakeOpenAI(replies=[Fault.cut(after_chunks=3)])) as llm:
        heard: list[LlmEvent] = []
        with pytest.raises(LlmError) as info:
            async for event in llm.stream_chat(MESSAGES):
                heard.append(event)
    assert info.value.retryable is True
    assert len(heard) == 3 and all(isinstance(e, TextDelta) for e in heard)


async def test_complete_json_sends_a_strict_schema_and_returns_the_content() -> None:
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "sentiment": {"type": "string"}},
        "required": ["summary", "sentiment"],
        "additionalProperties": False,
    }
    content = '{"summary": "Booked a table for two.", "sentiment": "positive"}'
    fake = FakeOpenAI(replies=[Text(content)])
    async with serve(fake) as llm:
        raw, usage = await llm.complete_json(
            MESSAGES, schema=schema, schema_name="call_analysis", model="gpt-4o"
        )

    assert raw == content
    assert usage is not None and usage.model == "gpt-4o" and usage.completion_tokens > 0
    sent = fake.chat_requests()[0].json
    assert "stream" not in sent or sent["stream"] is False
    assert sent["model"] == "gpt-4o"
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "call_analysis", "strict": True, "schema": schema},
    }


async def test_complete_json_retries_a_server_error_then_succeeds() -> None:
    fake = FakeOpenAI(replies=[Fault.http(500), Text('{"ok": true}')])
    async with serve(fake) as llm:
        raw, _usage = await llm.complete_json(MESSAGES, schema={"type": "object"}, schema_name="x")
    assert raw == '{"ok": true}'
    assert len(fake.chat_requests()) == 2


def sse_server(events: list[bytes], clients: list[tuple[str, int]] | None = None):  # noqa: ANN201
    """A raw SSE endpoint that answers every POST with the given bytes (records each request's client)."""

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return
        await read_body(receive)
        if clients is not None:
            clients.append(tuple(scope["client"]))
        await start_stream(send, 200, "text/event-stream", [])
        for event in events:
            await send_chunk(send, event)
        await end_stream(send)

    return app


def chunk(delta: dict | None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024",
        "choices": choices,
        "usage": usage,
    }


async def test_sse_with_crlf_comments_and_split_packets_is_parsed() -> None:
    # OpenRouter-style keep-alive comments, CRLF line ends, an `event:`-less multi-line-free body cut at
    # arbitrary byte boundaries (a TCP packet can end anywhere, even inside "\r\n").
    body = b"".join(
        [
            b": PROCESSING\r\n\r\n",
            b"data: " + msgspec.json.encode(chunk({"role": "assistant", "content": ""})) + b"\r\n\r\n",
            b"data: " + msgspec.json.encode(chunk({"content": "Hello"})) + b"\r\n\r\n",
            b"data:" + msgspec.json.encode(chunk({"content": " there."})) + b"\r\n\r\n",
            b"data: " + msgspec.json.encode(chunk({}, "stop")) + b"\r\n\r\n",
            b"data: "
            + msgspec.json.encode(chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 2}))
            + b"\r\n\r\n",
            b"data: [DONE]\r\n\r\n",
        ]
    )
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    async with LocalServer(sse_server(pieces)) as srv, httpx.AsyncClient() as http:
        llm = OpenAiLlm("k", base_url=f"{srv.http_url}/v1", http_client=http)
        events = await drain(llm.stream_chat(MESSAGES))
    assert events == [
        TextDelta("Hello"),
        TextDelta(" there."),
        UsageEvent(prompt_tokens=9, completion_tokens=2, model="gpt-4o-mini-2024"),
        LlmDone(finish_reason="stop"),
    ]


async def test_an_error_inside_the_stream_is_a_retryable_llm_error() -> None:
    events = [
        b"data: " + msgspec.json.encode(chunk({"content": "Hel"})) + b"\n\n",
        b'data: {"error": {"message": "The server is overloaded.", "type": "server_error"}}\n\n',
    ]
    async with LocalServer(sse_server(events)) as srv, httpx.AsyncClient() as http:
        llm = OpenAiLlm("k", base_url=f"{srv.http_url}/v1", http_client=http)
        heard: list[LlmEvent] = []
        with pytest.raises(LlmError) as info:
            async for event in llm.stream_chat(MESSAGES):
                heard.append(event)
    assert heard == [TextDelta("Hel")]
    assert info.value.retryable is True and "overloaded" in str(info.value)


async def test_consecutive_turns_reuse_one_connection() -> None:
    # The body is read to its end after [DONE], so the keep-alive connection serves the next turn
    # (against the real API a new connection is a TLS handshake on the latency path).
    events = [
        b"data: " + msgspec.json.encode(chunk({"content": "One."}, "stop")) + b"\n\n",
        b"data: [DONE]\n\n",
        b": trailing comment after DONE\n\n",
    ]
    clients: list[tuple[str, int]] = []
    async with LocalServer(sse_server(events, clients)) as srv, httpx.AsyncClient() as http:
        llm = OpenAiLlm("k", base_url=f"{srv.http_url}/v1", http_client=http)
        for _ in range(3):
            assert (await drain(llm.stream_chat(MESSAGES)))[-1] == LlmDone(finish_reason="stop")
    assert len(clients) == 3 and len(set(clients)) == 1


LONG_SYSTEM = {"role": "system", "content": "You are a booking assistant. " + "Keep every answer short. " * 220}


async def test_streamed_usage_reports_the_cached_part_of_the_prompt() -> None:
    # OpenAI bills prompt tokens served from its prompt cache at a discount and reports them in
    # usage.prompt_tokens_details.cached_tokens (a part of prompt_tokens). A voice agent resends the same system
    # prompt and history every turn, so from the second turn on most of the prompt is cached.
    fake = FakeOpenAI(replies=["Sure.", "Done."], prompt_caching=True)
    first = [LONG_SYSTEM, {"role": "user", "content": "Book a table."}]
    second = [*first, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "For two."}]
    async with serve(fake) as llm:
        turn1 = [e for e in await drain(llm.stream_chat(first)) if isinstance(e, UsageEvent)]
        turn2 = [e for e in await drain(llm.stream_chat(second)) if isinstance(e, UsageEvent)]
    assert fake.cached_reported[0] == 0 and fake.cached_reported[1] >= 1024
    assert turn1[0].cached_prompt_tokens == 0
    assert turn2[0].cached_prompt_tokens == fake.cached_reported[1] < turn2[0].prompt_tokens


async def test_json_completion_usage_reports_the_cached_part_of_the_prompt() -> None:
    fake = FakeOpenAI(replies=[Text('{"ok": true}'), Text('{"ok": true}')], prompt_caching=True)
    messages = [LONG_SYSTEM, {"role": "user", "content": "Summarise the call."}]
    async with serve(fake) as llm:
        _, first = await llm.complete_json(messages, schema={"type": "object"}, schema_name="x")
        _, again = await llm.complete_json(messages, schema={"type": "object"}, schema_name="x")
    assert first is not None and first.cached_prompt_tokens == 0
    assert again is not None and again.cached_prompt_tokens == fake.cached_reported[1] >= 1024


@pytest.mark.parametrize("details", [None, {"cached_tokens": None}, {}])
async def test_usage_without_prompt_details_counts_nothing_cached(details: dict | None) -> None:
    # OpenAI-compatible servers (vLLM, llama.cpp) may send no prompt_tokens_details at all, or nulls in it.
    body = b"".join(
        [
            b"data: " + msgspec.json.encode(chunk({"content": "Hi."}, "stop")) + b"\n\n",
            b"data: "
            + msgspec.json.encode(
                chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": details})
            )
            + b"\n\n",
            b"data: [DONE]\n\n",
        ]
    )
    async with LocalServer(sse_server([body])) as srv, httpx.AsyncClient() as http:
        llm = OpenAiLlm("k", base_url=f"{srv.http_url}/v1", http_client=http)
        events = await drain(llm.stream_chat(MESSAGES))
    assert UsageEvent(prompt_tokens=9, completion_tokens=2, model="gpt-4o-mini-2024") in events
