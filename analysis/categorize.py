"""Categorising calls where the other party said nothing, without spending an LLM call.

Rules (only when no caller turn has text; otherwise None and the LLM analysis runs):

- answered by a machine or a fax (``answered_by`` starts with ``machine`` or ``fax``) → ``voicemail``;
- never connected (status ``declined``, ``cancelled``, ``failed``, ``pending``, ``ringing``) → lead_category
  None: "not reached" is not a lead category, the call status already says why, and the lead keeps whatever
  category an earlier call gave it;
- answered by a person (or unknown) who stayed silent → ``cold``.

Sentiment is ``neutral``, success is false with score 0, lead_extraction is empty, usage is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.llm import AnalysisOutcome
from analysis.prompt import iter_turns

_NOT_CONNECTED = frozenset({"declined", "cancelled", "failed", "pending", "ringing"})


def _outcome(summary: str, lead_category: str | None, reason: str) -> AnalysisOutcome:
    return AnalysisOutcome(
        status="completed",
        summary=summary,
        sentiment="neutral",
        lead_category=lead_category,
        success_evaluation={"success": False, "score": 0, "reason": reason},
        lead_extraction={},
        usage=[],
        attempts=0,
    )


def categorize_without_llm(
    turns: Sequence[Any], answered_by: str | None, status: str | None
) -> AnalysisOutcome | None:
    """An outcome for calls where the caller said nothing, or None when the LLM analysis is needed."""
    if any(who == "Caller" for who, _ in iter_turns(turns)):
        return None
    machine = (answered_by or "").lower()
    if machine.startswith("machine"):
        return _outcome(
            "The call reached an answering machine or voicemail; no one spoke with the agent.",
            "voicemail",
            "The call went to voicemail.",
        )
    if machine.startswith("fax"):
        return _outcome("The call reached a fax machine.", "voicemail", "The number answered as a fax line.")
    if (status or "").lower() in _NOT_CONNECTED:
        return _outcome(
            f"The call was not answered (status: {status}).",
            None,
            "The call did not connect.",
        )
    return _outcome(
        "The call was answered but the other party said nothing.",
        "cold",
        "The other party did not respond to the agent.",
    )
