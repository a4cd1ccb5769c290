"""Provider-neutral streaming speech-to-text contract: the events a call session consumes.

An `SttProvider` opens one `SttStream` per call leg, fed with the call's own wire audio (no
transcoding). The stream yields `SttEvent`s: interim and final `Transcript`s (`speech_final` marks the
end of the caller's turn), `SpeechStarted` for barge-in, `UtteranceEnd` as the end-of-turn fallback when
`speech_final` never arrives, and exactly one `SttClosed` as the last event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Protocol

from msgspec import Struct

if TYPE_CHECKING:
    from providers.telephony.base import MediaFormat


class Transcript(Struct, frozen=True):
    text: str
    is_final: bool
    speech_final: bool
    start: float  # seconds on the stream's audio timeline
    duration: float
    confidence: float | None = None
    words: int = 0


class SpeechStarted(Struct, frozen=True):
    timestamp: float


class UtteranceEnd(Struct, frozen=True):
    last_word_end: float | None


class SttClosed(Struct, frozen=True):
    """The stream ended; `error` is None for a clean close, else what went wrong."""

    error: str | None


SttEvent = Transcript | SpeechStarted | UtteranceEnd | SttClosed


class SttError(Exception):
    """Opening the stream failed (rejected credentials or parameters, unreachable, timeout)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SttStream(Protocol):
    audio_seconds: float  # audio sent so far (for the usage meter)

    async def send_audio(self, chunk: bytes) -> None: ...

    async def keep_alive(self) -> None: ...

    async def finalize(self) -> None: ...

    async def close(self) -> None:
        """Send CloseStream and wait briefly for the provider's last messages and close."""
        ...

    def events(self) -> AsyncGenerator[SttEvent, None]: ...


class SttProvider(Protocol):
    name: str
    model: str

    async def connect(
        self, fmt: MediaFormat, language: str, *, endpointing_ms: int = 300, utterance_end_ms: int = 1000
    ) -> SttStream: ...
