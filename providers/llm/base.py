"""Provider-neutral LLM contract: a streamed chat turn as events, plus strict-JSON completions.

`stream_chat` yields `TextDelta`s as tokens arrive, one `ToolCallEvent` per complete (assembled) tool
call, a `UsageEvent` when the provider reports token counts, and `LlmDone` last. A stream the caller
cancels (or that fails) never reports usage: `estimate_usage` then counts it the way this provider's
tokenizer would, roughly, so the caller can meter it as an estimate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from msgspec import Struct


class TextDelta(Struct, frozen=True):
    text: str


class ToolCallEvent(Struct, frozen=True):
    id: str
    name: str
    arguments: str  # the complete JSON arguments string, as the model wrote it


class UsageEvent(Struct, frozen=True):
    prompt_tokens: int  # every prompt token, the cached ones included (as OpenAI reports `prompt_tokens`)
    completion_tokens: int
    model: str
    # The part of `prompt_tokens` served from the provider's prompt cache, billed at a discount
    # (OpenAI: `usage.prompt_tokens_details.cached_tokens`).
    cached_prompt_tokens: int = 0


class LlmDone(Struct, frozen=True):
    finish_reason: str | None


LlmEvent = TextDelta | ToolCallEvent | UsageEvent | LlmDone


class LlmError(Exception):
    """The LLM call failed; `retryable` says whether trying again may help (timeouts, 429, 5xx)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class LlmProvider(Protocol):
    name: str
    model: str

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[LlmEvent, None]:
        """An async generator: closing it early (`aclose()`) cancels the request."""
        ...

    def estimate_usage(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None,
        completion: str,
        model: str | None = None,
    ) -> UsageEvent:
        """Token counts of a request whose stream never reported usage: the prompt (`messages`, `tools`) and
        the `completion` text (and tool-call arguments) it produced before it stopped. Good enough for
        metering, not for context limits."""
        ...

    async def complete_json(
        self,
        messages: list[dict[str, Any]],
        *,
        schema: dict[str, Any],
        schema_name: str,
        model: str | None = None,
    ) -> tuple[str, UsageEvent | None]:
        """A strict json_schema completion; returns the raw JSON content and the usage."""
        ...

    async def aclose(self) -> None: ...
