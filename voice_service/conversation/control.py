"""The seams a live call is controlled and watched through: the commands a running CallSession accepts, and the
observer interface that sees the call's audio and text as they happen.

Commands (`CallSession.command(...)`; the types live in calls/commands.py, below the engine, so that live control
can route them) go onto the session controller's queue and are applied there, in order with
the call's other events, so they follow the same rules as the agent's own decisions:

* `EndCall` — stop the agent where it is and hang up (`end_reason` = the command's reason);
* `Say` — the agent speaks `text`: at once, cutting what it was saying (`interrupt=True`), or after the sentence it
  is saying (`interrupt=False`: that sentence plays to its end, the rest of the reply is dropped); the line goes
  into the history and the transcript like any agent turn;
* `Transfer` — the agent says the transfer line and the call is transferred to `to` (E.164), as the
  `transfer_call` tool does.

Observers (`CallSession.observe(observer)`) are called on the event loop, inside the call's hot path: they must
not block (append to a buffer or put on a queue). Times are on the session's clock (`CallSession.clock`,
monotonic seconds; `CallSession.t0` is the start of the call's media, the origin of the transcript's offsets).
Caller audio is the call's inbound stream frame by frame (contiguous: its timeline is its byte count); agent
audio is what the engine handed to the media session, which plays it in order at real time — `agent_cleared`
says that whatever was still unplayed at `at` was dropped (barge-in, or an interrupting command).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from voice_service.calls.commands import Command, EndCall, Say, Transfer
from voice_service.conversation.metering import TranscriptTurn

log = logging.getLogger(__name__)

__all__ = ["CallObserver", "Command", "EndCall", "Observers", "Say", "Transfer"]


class CallObserver:
    """Receives a live call's audio and text. Override what you need: every method does nothing by default."""

    def caller_audio(self, payload: bytes) -> None:
        """One inbound frame (20 ms in the call's wire format, `CallSession.media.format`)."""

    def caller_text(self, text: str, *, final: bool) -> None:
        """The caller's words as the STT hears them: interim guesses (`final=False`) and settled segments."""

    def agent_audio(self, payload: bytes, at: float) -> None:
        """Agent audio queued for the caller (plays after what was queued before it)."""

    def agent_cleared(self, at: float) -> None:
        """Every agent audio frame not yet played at `at` was dropped."""

    def agent_text(self, text: str) -> None:
        """A sentence of the agent starts playing to the caller."""

    def transcript(self, entry: TranscriptTurn) -> None:
        """A finished transcript entry (caller or agent turn), as it will be stored with the call."""


class Observers:
    """The observers of one call, called in turn. Falsy when there are none, so the hot path tests it first.

    An observer that raises is logged and dropped: watching a call must never break it."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[CallObserver] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, observer: CallObserver) -> Callable[[], None]:
        """Adds `observer`; returns the function that removes it."""
        self._items.append(observer)
        return lambda: self.remove(observer)

    def remove(self, observer: CallObserver) -> None:
        if observer in self._items:
            self._items.remove(observer)

    def _each(self, name: str, call: Callable[[CallObserver], None]) -> None:
        for observer in tuple(self._items):
            try:
                call(observer)
            except Exception:
                log.exception("call observer failed; removed", extra={"hook": name})
                self.remove(observer)

    def caller_audio(self, payload: bytes) -> None:
        self._each("caller_audio", lambda o: o.caller_audio(payload))

    def caller_text(self, text: str, *, final: bool) -> None:
        self._each("caller_text", lambda o: o.caller_text(text, final=final))

    def agent_audio(self, payload: bytes, at: float) -> None:
        self._each("agent_audio", lambda o: o.agent_audio(payload, at))

    def agent_cleared(self, at: float) -> None:
        self._each("agent_cleared", lambda o: o.agent_cleared(at))

    def agent_text(self, text: str) -> None:
        self._each("agent_text", lambda o: o.agent_text(text))

    def transcript(self, entry: TranscriptTurn) -> None:
        self._each("transcript", lambda o: o.transcript(entry))
