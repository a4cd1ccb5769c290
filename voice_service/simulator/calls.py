"""The simulator's calls, whatever the carrier: the callee/caller script (Scenario), what the carrier saw (SimCall),
the caller's audio, and the waits every carrier's call goes through (ringing, the transferred leg)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from voice_service.simulator.audio import load_wav, speech_like, to_wire
from voice_service.simulator.media import MediaRecord

__all__ = ["Outcome", "Scenario", "SimCall", "caller_audio", "transferred_leg", "wait_hangup"]

Outcome = Literal["answer", "busy", "no-answer", "failed", "machine"]


@dataclass(frozen=True)
class Scenario:
    """How the callee (outbound) or caller (inbound) behaves."""

    answer: Outcome = "answer"  # machine: answers, and AMD reports a machine
    ring_seconds: float = 0.2
    talk_seconds: float = 1.0  # generated speech-like caller audio, unless `wav` is given
    wav: str | None = None  # a 16-bit PCM WAV file to stream as the caller
    speed: float = 1.0  # 1.0 = real time
    hangup_after: float | None = (
        0.5  # seconds of listening after the audio; None: wait for the service to hang up
    )
    drop_after: float | None = None  # abort the media TCP connection (no stop, no close) after this long
    dtmf: tuple[tuple[float, str], ...] = ()
    rest_status: int | None = None  # answer the place-call request with this HTTP error instead
    transfer_status: int | None = None  # answer a transfer request with this HTTP error instead
    transferred_seconds: float = 0.5  # how long the transfer target talks before hanging up
    vonage_rate_per_minute: str = "0.01270000"


@dataclass
class SimCall:
    """One simulated call, as the provider saw it."""

    id: str  # Twilio CallSid / Vonage uuid
    provider: Literal["twilio", "vonage"]
    direction: Literal["outbound", "inbound"]
    to: str
    from_: str
    scenario: Scenario
    account_sid: str = ""
    request: dict[str, Any] = field(
        default_factory=dict
    )  # the place-call request (Twilio form / Vonage JSON)
    statuses: list[str] = field(default_factory=list)  # provider status words sent, in order
    webhook_statuses: list[int] = field(
        default_factory=list
    )  # HTTP status of each webhook delivery the service answered (retries included)
    media: MediaRecord = field(default_factory=MediaRecord)
    answer_status: int | None = None  # inbound: the service's answer to the voice/answer webhook
    answer_body: str | None = None
    rejected_message: str | None = None  # inbound: what a <Say>/talk rejection said
    custom_parameters: dict[str, str] = field(default_factory=dict)
    hangup_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the carrier ends the media leg: a hang-up or a transfer request.
    media_end: asyncio.Event = field(default_factory=asyncio.Event)
    transferred_to: str | None = None  # the E.164 number the service transferred the call to
    transfer_caller_id: str | None = None  # the caller id it asked to show the target (E.164), if any
    # Where the dialled leg's statuses go (Twilio <Number statusCallback>, Vonage connect eventUrl), if given.
    transfer_status_url: str | None = None
    dialled_legs: list[SimCall] = field(default_factory=list)  # the legs a transfer dialled, once they ended
    conversation_id: str | None = None  # Vonage: the conversation_uuid every leg of the call shares
    done: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float | None = None
    ended_at: float | None = None
    duration: int | None = None  # seconds, as reported in the final status
    error: str | None = None

    @property
    def in_progress(self) -> bool:
        """Answered, and the media leg has not ended (a hang-up or transfer request ends it)."""
        return self.answered_at is not None and not self.media_end.is_set() and not self.done.is_set()

    def hang_up(self) -> None:
        self.hangup_requested.set()
        self.media_end.set()

    def transfer(self, to: str, caller_id: str | None, status_url: str | None = None) -> None:
        self.transferred_to, self.transfer_caller_id = to, caller_id
        self.transfer_status_url = status_url
        self.media_end.set()

    @property
    def final_status(self) -> str | None:
        return self.statuses[-1] if self.done.is_set() and self.statuses else None

    async def finished(self, timeout: float = 30.0) -> SimCall:  # noqa: ASYNC109 - public test-helper API
        await asyncio.wait_for(self.done.wait(), timeout)
        return self


@lru_cache(maxsize=32)
def _speech(seconds: float, rate: int) -> bytes:
    return speech_like(seconds, rate)


def caller_audio(scenario: Scenario, encoding: str, rate: int) -> bytes:
    """The scenario's caller audio in the wire format."""
    if scenario.wav:
        pcm, wav_rate = load_wav(scenario.wav)
    else:
        pcm, wav_rate = _speech(scenario.talk_seconds, rate), rate
    return to_wire(pcm, wav_rate, encoding, rate)


async def wait_hangup(call: SimCall, seconds: float) -> bool:
    """Sleep `seconds`; True if the service hung up meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(call.hangup_requested.wait(), seconds)
    return call.hangup_requested.is_set()


async def transferred_leg(call: SimCall, leg_id: str) -> SimCall | None:
    """After a transfer the call goes on with the target until it hangs up (or the service hangs up); returns the
    dialled leg (a call of the carrier's own, outbound to the target), ended, or None when there was no transfer."""
    if call.transferred_to is None:
        return None
    leg = SimCall(
        id=leg_id,
        provider=call.provider,
        direction="outbound",
        to=call.transferred_to,
        from_=call.transfer_caller_id or call.from_,
        scenario=call.scenario,
        account_sid=call.account_sid,
    )
    leg.answered_at = time.time()
    await wait_hangup(call, call.scenario.transferred_seconds)
    leg.ended_at = time.time()
    leg.duration = round(leg.ended_at - leg.answered_at)
    leg.statuses.append("completed")
    leg.done.set()
    call.dialled_legs.append(leg)
    return leg
