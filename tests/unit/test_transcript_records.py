"""The transcript the engine stores for an agent turn the caller cut off: `text` is what the caller heard (what the
LLM history keeps too); the whole line the agent was saying goes to metadata.cut_off_lines, by the turn's start. A
turn played out stores only its `text`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from voice_service.calls.schemas import CallInfo
from voice_service.conversation.control import Observers
from voice_service.conversation.records import CallRecords
from voice_service.conversation.speech import Utterance


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _records(clock: Clock) -> CallRecords:
    call = CallInfo(
        tenant_id=uuid.uuid4(), call_id=uuid.uuid4(), call_created_at=datetime.now(UTC), agent_id=1, lead_id=None,
        direction="outbound", variables={}, voice_id=None, provider="twilio", provider_call_id="CA1",
        from_e164="+14155550100", to_e164="+14155550199",
    )
    return CallRecords(call, t0=clock.now, clock=clock, observers=Observers())


def _turn(clock: Clock, sentences: list[str], played: int, *, generated: str = "") -> Utterance:
    turn = Utterance(1, "llm", trigger="speech_final", trigger_at=clock.now, media=None, clock=clock,  # type: ignore[arg-type]
                     observers=Observers())
    turn.generated = generated or " ".join(sentences)
    turn.first_audio_at = clock.now
    for i, text in enumerate(sentences):
        mark = turn.next_mark()
        turn.sentence_started(text)
        turn.sentence_queued(text, mark)
        if i < played:
            clock.now += 1.0
            turn.mark_played(mark, clock.now)
    return turn


def test_an_interrupted_agent_turn_keeps_what_was_heard_and_the_whole_line() -> None:
    clock = Clock()
    records = _records(clock)
    turn = _turn(clock, ["Hi, this is Sam.", "Do you have a minute?"], played=1,
                 generated="Hi, this is Sam. Do you have a minute? It is about your bill.")
    records.agent(turn, text=turn.heard_text(), interrupted=True, at=clock.now + 0.4)
    [entry] = records.transcripts()
    assert entry == {"role": "agent", "text": "Hi, this is Sam.", "start_ms": 0, "end_ms": 1400, "interrupted": True}
    assert records.cut_off_lines() == [
        {"start_ms": 0, "text": "Hi, this is Sam. Do you have a minute? It is about your bill."}
    ]
    metadata = records.metadata(None, end_reason="caller_hangup", ended_at=clock.now, stt_seconds=0)
    assert metadata["cut_off_lines"] == records.cut_off_lines()


def test_a_turn_played_out_stores_its_text_only() -> None:
    clock = Clock()
    records = _records(clock)
    turn = _turn(clock, ["Sure.", "For how many people?"], played=2)
    records.agent(turn, text=turn.spoken_text(), interrupted=False, at=clock.now)
    [entry] = records.transcripts()
    assert entry == {"role": "agent", "text": "Sure. For how many people?", "start_ms": 0, "end_ms": 2000,
                     "interrupted": False}
    assert records.cut_off_lines() == []
