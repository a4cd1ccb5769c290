"""An OpenAI-compatible server: `/v1/chat/completions` (streamed SSE or JSON) and `/v1/audio/speech`.

Chat replies come from a script: a queue of `Text`, `ToolCalls` or `Fault` (plain strings are `Text`),
or a `responder(request_json) -> reply` callable; when both are exhausted/absent, `default_reply`.
Streaming follows OpenAI's wire format: `chat.completion.chunk` objects (role first, then content or
tool-call deltas with id/name first and arguments in pieces, then a chunk with `finish_reason`), with
`stream_options.include_usage` every chunk carries `"usage": null` and a last chunk has `choices: []`
and the usage; then `data: [DONE]`. Timing: `first_token_delay` before the first content chunk and
`inter_token_delay` between chunks. Non-streaming requests (e.g. `response_format` json_schema) get a
`chat.completion` object. `/v1/audio/speech` with `response_format="pcm"` returns a real PCM16 24 kHz
mono tone whose length is proportional to the input's characters, streamed in odd-sized chunks (as
real HTTP chunking splits samples). Every request is recorded in `requests`.

With `prompt_caching`, usage reports `prompt_tokens_details.cached_tokens` the way OpenAI's automatic prompt
caching does: the longest prefix (tools, then messages) this request shares with an earlier one, counted only
from 1,024 tokens on and in steps of 128 tokens; each reported figure is kept in `cached_reported`.

Usage::

    fake = FakeOpenAI(replies=["Sure, what time?", ToolCalls([ToolCall("book", {"time": "20:00"})])])
    async with LocalServer(fake) as srv:
        llm = OpenAiLlm("test-key", base_url=f"{srv.http_url}/v1", http_client=http)
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.fakes.server import (
    DisconnectWatch,
    Fault,
    Receive,
    RecordedRequest,
    Scope,
    Send,
    end_stream,
    pcm16_tone,
    record_request,
    send_chunk,
    send_json,
    start_stream,
    wait_for_disconnect,
)

_encoder = msgspec.json.Encoder()
_TOKEN = re.compile(r"\s*\S+|\s+")

SPEECH_RATE = 24000
CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts from 1,024 tokens on, hits counted in 128-token steps


@dataclass(frozen=True)
class Text:
    text: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else _encoder.encode(self.arguments).decode()


@dataclass(frozen=True)
class ToolCalls:
    calls: list[ToolCall]
    text: str = ""  # content streamed before the calls (models sometimes talk first)


Reply = Text | ToolCalls | Fault


def tokens(text: str) -> list[str]:
    """Split like a tokenizer would stream it: words with their leading whitespace."""
    return _TOKEN.findall(text)


def _id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


@dataclass
class FakeOpenAI:
    """ASGI app. Mutate `replies` between turns if a test needs to; read `requests` afterwards."""

    replies: Iterable[Reply | str] = ()
    responder: Callable[[dict[str, Any]], Reply | str] | None = None
    default_reply: Reply | str = "Okay."
    api_key: str | None = "test-key"  # None: accept any (or no) key
    first_token_delay: float = 0.0
    inter_token_delay: float = 0.0
    speech_seconds_per_char: float = 0.06
    speech_chunk_bytes: int = 4801  # odd on purpose: real chunk boundaries split samples
    speech_first_byte_delay: float = 0.0
    speech_faults: Iterable[Fault] = ()
    prompt_caching: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    cached_reported: list[int] = field(default_factory=list)
    _seen_prompts: list[tuple[Any, list[Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.replies = deque(self.replies)
        self.speech_faults = deque(self.speech_faults)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = prompt_tokens(body)
        cached = 0
        if self.prompt_caching:
            tools, messages = body.get("tools"), body.get("messages", [])
            shared = 0
            for seen_tools, seen_messages in self._seen_prompts:
                if seen_tools != tools:
                    continue
                n = 0
                while n < min(len(messages), len(seen_messages)) and messages[n] == seen_messages[n]:
                    n += 1
                shared = max(shared, n)
            self._seen_prompts.append((tools, messages))
            prefix = prompt_tokens({"tools": tools, "messages": messages[:shared]}) if shared else 0
            if prefix >= CACHE_MIN_TOKENS:
                cached = min(prompt, CACHE_MIN_TOKENS + (prefix - CACHE_MIN_TOKENS) // 128 * 128)
            self.cached_reported.append(cached)
        return _usage(prompt, completion, cached)

    def next_reply(self, body: dict[str, Any]) -> Reply:
        assert isinstance(self.replies, deque)
        reply: Reply | str
        if self.replies:
            reply = self.replies.popleft()
        elif self.responder is not None:
            reply = self.responder(body)
        else:
            reply = self.default_reply
        return Text(reply) if isinstance(reply, str) else reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = await record_request(scope, receive)
        self.requests.append(request)
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            await _error(send, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return
        if request.method != "POST" or not isinstance(request.json, dict):
            await _error(
                send, 404 if request.method != "POST" else 400, "Unsupported request", "invalid_request_error"
            )
            return
        if request.path == "/v1/chat/completions":
            await self._chat(request, receive, send)
        elif request.path == "/v1/audio/speech":
            await self._speech(request, receive, send)
        else:
            await _error(send, 404, f"Unknown path {request.path}", "invalid_request_error")

    # -- chat -----------------------------------------------------------------------------------------

    async def _chat(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        body: dict[str, Any] = request.json
        if not body.get("model") or not isinstance(body.get("messages"), list) or not body["messages"]:
            await _error(
                send, 400, "model and a non-empty messages list are required", "invalid_request_error"
            )
            return
        reply = self.next_reply(body)
        request.extra["reply"] = reply
        if isinstance(reply, Fault) and reply.kind == "status":
            await _status_fault(send, reply.status)
            return
        if isinstance(reply, Fault) and reply.kind == "hang" and reply.after_chunks == 0:
            await wait_for_disconnect(receive)
            request.disconnected = True
            return
        if body.get("stream"):
            await self._stream_chat(request, body, reply, receive, send)
        else:
            await self._complete_chat(request, body, reply, receive, send)

    async def _complete_chat(
        self, request: RecordedRequest, body: dict[str, Any], reply: Reply, receive: Receive, send: Send
    ) -> None:
        if isinstance(reply, Fault):  # hang/cut after chunks make no sense without a stream: hang
            await wait_for_disconnect(receive)
            request.disconnected = True
            return
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
        if isinstance(reply, Text):
            message["content"] = reply.text
            finish_reason = reply.finish_reason
            completion = len(tokens(reply.text))
        else:
            message["content"] = reply.text or None
            message["tool_calls"] = [
                {
                    "id": call.id or _id("call_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.calls
            ]
            finish_reason = "tool_calls"
            completion = len(tokens(reply.text)) + sum(
                len(tokens(c.arguments_json())) + 1 for c in reply.calls
            )
        await send_json(
            send,
            200,
            {
                "id": _id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
                ],
                "usage": self.usage(body, completion),
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            },
            [("x-request-id", _id("req_"))],
        )

    async def _stream_chat(
        self, request: RecordedRequest, body: dict[str, Any], reply: Reply, receive: Receive, send: Send
    ) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        completion_id = _id("chatcmpl-")
        created = int(time.time())

        def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                payload["usage"] = None
            return b"data: " + _encoder.encode(payload) + b"\n\n"

        fault = reply if isinstance(reply, Fault) else None
        if fault is not None:
            # a faulty stream still starts like a real one: some text, then the failure
            pieces = tokens("This reply will not finish because the fake was told to fail here.")
            events = [chunk({"role": "assistant", "content": "", "refusal": None})]
            events += [chunk({"content": p}) for p in pieces]
            completion = 0
            finish_reason = None
        elif isinstance(reply, Text):
            pieces = tokens(reply.text)
            events = [chunk({"role": "assistant", "content": "", "refusal": None})]
            events += [chunk({"content": p}) for p in pieces]
            events.append(chunk({}, reply.finish_reason))
            completion = len(pieces)
            finish_reason = reply.finish_reason
        else:
            pieces = tokens(reply.text)
            events = [chunk({"role": "assistant", "content": "" if pieces else None, "refusal": None})]
            events += [chunk({"content": p}) for p in pieces]
            completion = len(pieces)
            for index, call in enumerate(reply.calls):
                events.append(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call.id or _id("call_"),
                                    "type": "function",
                                    "function": {"name": call.name, "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                arg_pieces = _split_arguments(call.arguments_json())
                events += [
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    for piece in arg_pieces
                ]
                completion += len(arg_pieces) + 1
            events.append(chunk({}, "tool_calls"))
            finish_reason = "tool_calls"
        if include_usage and fault is None:
            usage_chunk = chunk(None)
            usage_payload = msgspec.json.decode(usage_chunk[6:])
            usage_payload["usage"] = self.usage(body, completion)
            events.append(b"data: " + _encoder.encode(usage_payload) + b"\n\n")
        if fault is None:
            events.append(b"data: [DONE]\n\n")
        request.extra["finish_reason"] = finish_reason

        async with DisconnectWatch(receive) as watch:
            await start_stream(
                send,
                200,
                "text/event-stream; charset=utf-8",
                [("x-request-id", _id("req_")), ("openai-processing-ms", "1")],
            )
            await send_chunk(send, events[0])
            for n, event in enumerate(events[1:], start=1):
                if fault is not None and n > fault.after_chunks:
                    if fault.kind == "hang":
                        await watch.until_disconnect()
                        request.disconnected = True
                    # "cut": return without finishing the body: uvicorn drops the connection
                    return
                await watch.sleep(self.first_token_delay if n == 1 else self.inter_token_delay)
                if watch.disconnected:
                    request.disconnected = True
                    return
                await send_chunk(send, event)
            await end_stream(send)

    # -- speech ---------------------------------------------------------------------------------------

    async def _speech(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        body: dict[str, Any] = request.json
        text = body.get("input")
        if not isinstance(text, str) or not text or not body.get("model") or not body.get("voice"):
            await _error(
                send, 400, "model, voice and a non-empty input are required", "invalid_request_error"
            )
            return
        if len(text) > 4096:
            await _error(send, 400, "input is longer than 4096 characters", "invalid_request_error")
            return
        if body.get("response_format", "mp3") != "pcm":
            await _error(send, 400, "this fake only produces response_format=pcm", "invalid_request_error")
            return
        assert isinstance(self.speech_faults, deque)
        fault = self.speech_faults.popleft() if self.speech_faults else None
        if fault is not None and fault.kind == "status":
            await _status_fault(send, fault.status)
            return
        audio = pcm16_tone(len(text) * self.speech_seconds_per_char, rate=SPEECH_RATE, freq=220.0)
        request.extra["audio_bytes"] = len(audio)
        async with DisconnectWatch(receive) as watch:
            if fault is not None and fault.kind == "hang" and fault.after_chunks == 0:
                await watch.until_disconnect()
                request.disconnected = True
                return
            await watch.sleep(self.speech_first_byte_delay)
            await start_stream(send, 200, "application/octet-stream", [("x-request-id", _id("req_"))])
            size = self.speech_chunk_bytes
            for n, start in enumerate(range(0, len(audio), size)):
                if fault is not None and n >= fault.after_chunks:
                    if fault.kind == "hang":
                        await watch.until_disconnect()
                        request.disconnected = True
                    return
                if watch.disconnected:
                    request.disconnected = True
                    return
                await send_chunk(send, audio[start : start + size])
                await asyncio.sleep(0)
            await end_stream(send)


def prompt_tokens(body: dict[str, Any]) -> int:
    total = 3
    for message in body.get("messages", []):
        content = message.get("content")
        text = content if isinstance(content, str) else _encoder.encode(content).decode() if content else ""
        total += 4 + (len(text) + 3) // 4
    if body.get("tools"):
        total += len(_encoder.encode(body["tools"])) // 4
    return total


def _usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _split_arguments(arguments: str, size: int = 7) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


async def _error(send: Send, status: int, message: str, kind: str, code: str | None = None) -> None:
    await send_json(send, status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


async def _status_fault(send: Send, status: int) -> None:
    if status == 429:
        await send_json(
            send,
            429,
            {
                "error": {
                    "message": "Rate limit reached for requests. Please try again in 1s.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            [("retry-after", "1"), ("x-ratelimit-remaining-requests", "0")],
        )
        return
    message = "The server had an error while processing your request. Sorry about that!"
    await _error(send, status, message, "server_error" if status >= 500 else "invalid_request_error")
