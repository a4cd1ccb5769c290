"""OpenAI (or any OpenAI-compatible server) chat completions as an `LlmProvider`.

Conversation turns stream (`stream=True` with `stream_options.include_usage`, so the last chunk carries
the token counts) and never retry: a caller waiting on the phone is better served by an error it can
handle than by a silent second attempt. Tool-call deltas (id and name first, then the arguments in
pieces, keyed by `index`) are assembled into complete `ToolCallEvent`s. `complete_json` (post-call
analysis) uses a strict `json_schema` response format and may retry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import openai
from openai import AsyncOpenAI

from providers.llm.base import LlmDone, LlmError, LlmEvent, TextDelta, ToolCallEvent, UsageEvent

logger = logging.getLogger(__name__)

_json = msgspec.json.Encoder()


def estimate_tokens(text: str) -> int:
    """Rough token count for text a cancelled stream produced (no usage chunk ever arrives then).

    OpenAI's tokenizers average about four characters of English per token; this rounds up, so a
    non-empty text counts at least one token. Good enough for metering, not for context limits.
    """
    return (len(text) + 3) // 4


def estimate_prompt_tokens(messages: list[dict], tools: list[dict] | None = None) -> int:
    """Rough prompt size for a cancelled turn: content estimate plus ~4 tokens of framing per message."""
    total = 3
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else _json.encode(content).decode() if content else ""
        if message.get("tool_calls"):
            text += _json.encode(message["tool_calls"]).decode()
        total += 4 + estimate_tokens(text)
    if tools:
        total += estimate_tokens(_json.encode(tools).decode())
    return total


class _PartialCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class OpenAiLlm:
    """`http_client`: a shared httpx.AsyncClient (not closed by `aclose`); without one, an own client."""

    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        http_client: httpx.AsyncClient | None = None,
        connect_timeout: float = 5.0,
        stream_read_timeout: float = 10.0,
        json_timeout: float = 60.0,
        json_max_retries: int = 2,
    ) -> None:
        self.model = model
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        # read timeout = longest wait for the next chunk (first token included) of a streamed turn
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=self._http,
            max_retries=0,
            timeout=httpx.Timeout(stream_read_timeout, connect=connect_timeout),
        )
        self._json_client = self._client.with_options(
            max_retries=json_max_retries, timeout=httpx.Timeout(json_timeout, connect=connect_timeout)
        )

    async def stream_chat(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[LlmEvent]:
        model = model or self.model
        options: dict[str, Any] = {}
        if tools:
            options["tools"] = tools
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_completion_tokens"] = max_tokens
        try:
            stream = await self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
        except openai.APIError as exc:
            raise _llm_error(exc) from exc

        calls: dict[int, _PartialCall] = {}
        finish_reason: str | None = None
        finished = False
        try:
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            yield TextDelta(delta.content)
                        for piece in delta.tool_calls or ():
                            call = calls.setdefault(piece.index, _PartialCall())
                            if piece.id:
                                call.id = piece.id
                            if piece.function is not None:
                                if piece.function.name:
                                    call.name = piece.function.name
                                if piece.function.arguments:
                                    call.arguments.append(piece.function.arguments)
                        if choice.finish_reason is not None:
                            finished = True
                            finish_reason = choice.finish_reason
                            for event in _complete_calls(calls):
                                yield event
                    if chunk.usage is not None:
                        yield UsageEvent(
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                            model=chunk.model or model,
                        )
        except openai.APIError as exc:
            raise _llm_error(exc) from exc
        if not finished:
            raise LlmError("the stream ended before a finish_reason", retryable=True)
        yield LlmDone(finish_reason=finish_reason)

    async def complete_json(
        self, messages: list[dict], *, schema: dict, schema_name: str, model: str | None = None
    ) -> tuple[str, UsageEvent | None]:
        model = model or self.model
        try:
            response = await self._json_client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": schema_name, "strict": True, "schema": schema},
                },
            )
        except openai.APIError as exc:
            raise _llm_error(exc) from exc
        if not response.choices:
            raise LlmError("the completion has no choices", retryable=True)
        choice = response.choices[0]
        usage = (
            UsageEvent(
                prompt_tokens=response.usage.prompt_tokens,
                completion_tokens=response.usage.completion_tokens,
                model=response.model or model,
            )
            if response.usage is not None
            else None
        )
        if choice.message.refusal:
            raise LlmError(f"the model refused: {choice.message.refusal}", retryable=False)
        if choice.finish_reason == "length":
            raise LlmError("the JSON output was cut off at the token limit", retryable=False)
        if choice.message.content is None:
            raise LlmError("the completion has no content", retryable=True)
        return choice.message.content, usage

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def _complete_calls(calls: dict[int, _PartialCall]) -> list[ToolCallEvent]:
    events = [
        ToolCallEvent(id=call.id, name=call.name, arguments="".join(call.arguments) or "{}")
        for _, call in sorted(calls.items())
    ]
    calls.clear()
    return events


def _llm_error(exc: openai.APIError) -> LlmError:
    if isinstance(exc, openai.APITimeoutError):
        return LlmError(f"openai timed out: {exc}", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return LlmError(f"openai connection failed: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        return LlmError(f"openai HTTP {status}: {exc.message}", retryable=retryable, status=status)
    if isinstance(exc, openai.APIResponseValidationError):
        return LlmError(f"openai response did not validate: {exc}", retryable=False)
    # an error event inside an otherwise successful stream
    return LlmError(f"openai stream error: {exc.message}", retryable=True)
