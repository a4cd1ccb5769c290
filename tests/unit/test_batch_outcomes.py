"""A batch attempt's outcome says what happened to the conversation: answered (and talked), voicemail, no answer,
busy, cancelled, or failed — a call the service could not set up (or that failed before the agent said anything)
never spoke to the callee, so it is a failure, whatever the carrier's status."""

from __future__ import annotations

import pytest

from voice_service.batches.policy import classify


@pytest.mark.parametrize(
    ("status", "answered_by", "end_reason", "agent_spoke", "outcome"),
    [
        ("ended", "human", "agent_ended", True, "answered"),
        ("ended", None, None, False, "answered"),  # the callee answered and hung up before the agent spoke
        ("ended", "machine_start", None, True, "voicemail"),
        ("ended", None, "setup_failed", False, "failed"),
        ("ended", "human", "setup_failed", False, "failed"),
        ("ended", None, "tts_failed", False, "failed"),
        ("ended", None, "llm_failed", False, "failed"),
        ("ended", None, "stt_failed", False, "failed"),
        ("ended", None, "stt_failed", True, "answered"),  # they talked, then recognition broke
        ("declined", None, "busy", False, "busy"),
        ("declined", None, "rejected", False, "busy"),
        ("declined", None, "no_answer", False, "no_answer"),
        ("cancelled", None, "hangup_requested", False, "cancelled"),
        ("failed", None, "invalid_number", False, "failed"),
        ("failed", None, "dispatch_interrupted", False, "dispatch_interrupted"),
    ],
)
def test_outcome(status: str, answered_by: str | None, end_reason: str | None, agent_spoke: bool, outcome: str) -> None:
    assert classify(status, answered_by, end_reason, agent_spoke=agent_spoke) == outcome
