"""Pure parts of the console: the lead search's words, the latency chart, a batch's pace and time left, and the
new-batch form's checks (no database, no browser)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from voice_service.batches.progress import BatchProgress
from voice_service.batches.schemas import BatchCounts
from voice_service.calls.views import TurnLatency
from voice_service.console import batch_form
from voice_service.console.charts import latency_chart
from voice_service.leads.service import search_terms


def test_search_words_become_prefix_terms() -> None:
    assert search_terms("ali smi") == "'ali':* & 'smi':*"
    assert search_terms("  +1 (415) 555-01 ") == "'+141555501':*"  # a phone as the index holds it
    assert search_terms("1415") == "'+1415':*"
    assert search_terms("ann.lee@acme.com") == "'ann':* & 'lee':* & 'acme':* & 'com':*"
    assert search_terms("O'Brien") == "'o''brien':*"  # quotes doubled: never a tsquery syntax error
    # Operators inside quotes are plain characters to to_tsquery (its parser then drops them).
    assert search_terms("a\\b & c | !d") == "'ab':* & 'c':* & '!d':*"
    assert search_terms("--- ...") is None
    assert search_terms(" ".join(f"w{i}" for i in range(20))).count("&") == 7  # at most 8 words


def test_latency_chart_draws_one_bar_per_stage_and_names_each() -> None:
    turns = [TurnLatency(turn=1, trigger="starter", llm_first_token_ms=300.0, tts_first_byte_ms=100.0),
             TurnLatency(turn=2, trigger="speech_final", stt_final_ms=200.0, llm_first_token_ms=500.0,
                         tts_first_byte_ms=300.0)]
    svg = str(latency_chart(turns))
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title id=" in svg
    rects = re.findall(r'<rect class="(lat-\w+)" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)
    assert [r[0] for r in rects] == ["lat-llm", "lat-tts", "lat-stt", "lat-llm", "lat-tts"]
    # Stacked: each stage starts where the previous one ended; the longest turn (1,000 ms) spans most of the axis.
    assert float(rects[3][1]) == float(rects[2][1]) + float(rects[2][2])
    assert "Turn 2 (speech_final): Text-to-speech first byte 300 ms" in svg
    assert latency_chart([TurnLatency(turn=1)]) == ""


def test_pace_and_time_left() -> None:
    start = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)

    def progress(**counts: int) -> BatchProgress:
        c = {"total": 100, "queued": 0, "in_progress": 0, "retrying": 0, "completed": 0, "failed": 0, "skipped": 0,
             "cancelled": 0, **counts}
        return BatchProgress(id=uuid.uuid4(), name=None, status="running", counts=BatchCounts(**c),
                             created_at=start, started_at=start, completed_at=None, updated_at=start,
                             live_calls=[], at=start + timedelta(minutes=10))

    p = progress(completed=15, failed=5, skipped=10, in_progress=5, queued=65)
    assert p.calls_per_minute == 2.0 and p.remaining == 70 and p.eta_seconds == 35 * 60
    assert p.done == 30 and p.percent_done == 30
    assert progress(queued=100).calls_per_minute is None and progress(queued=100).eta_seconds is None


def test_the_batch_form_names_each_wrong_input() -> None:
    form = batch_form.BatchForm(agent_id="7", from_number_id=str(uuid.uuid4()), window_start="09:00",
                                window_end="25:00", max_concurrency="0", lead_ids=[str(uuid.uuid4())])
    values, errors = batch_form.parse(form)
    assert errors == {"window_end": "Calling window end: enter a time of day as HH:MM, e.g. 09:00",
                      "max_concurrency": "Calls at once: must be at least 1"}
    assert values["entries"] == [{"lead_id": form.lead_ids[0]}] and values["agent_id"] == 7
    rows, problem = batch_form.read_csv(b"\xef\xbb\xbfPhone,first_name,plan\n+14155550100,Ann,gold\n\n")
    assert problem is None and rows == [{"phone": "+14155550100", "first_name": "Ann", "variables": {"plan": "gold"}}]
    assert batch_form.read_csv(b"name\nAnn\n")[1] == "the header row has no phone column; it is required"
    assert batch_form.read_csv(b"phone\n")[1] == "the file has a header but no rows"
