"""A call's page over HTTP: the transcript as a conversation with times, the recording through the console session
(Range included), per-turn latency drawn as SVG, the cost breakdown with its total, the analysis, the call's events,
and the live panel's controls (roles, tenants, refusals). The whole flow on real calls: test_console_e2e.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import msgspec

from tests.support.console import api_key, signed_in, text_of
from voice_service.recordings.service import audio_key
from voice_service.recordings.storage import storage_from_settings

TRANSCRIPT = [
    {"role": "agent", "text": "Hello Ann, this is Ava from Acme.", "start_ms": 400, "end_ms": 2600,
     "interrupted": False},
    {"role": "caller", "text": "Hi! Yes, I wanted to ask about the offer.", "start_ms": 3100, "end_ms": 5200,
     "interrupted": False},
    {"role": "agent", "text": "Of course, the offer runs until", "start_ms": 65_900, "end_ms": 66_800,
     "interrupted": True},
]
BREAKDOWN = [
    {"category": "telephony", "provider": "twilio", "model": None, "unit": "minute", "quantity": "2",
     "unit_price": "0.014", "cost": "0.028000", "direction": "outbound"},
    {"category": "stt", "provider": "deepgram", "model": "nova-3", "unit": "second", "quantity": "67",
     "unit_price": "0.0000716", "cost": "0.004797"},
    {"category": "llm", "provider": "openai", "model": "gpt-4o-mini", "unit": "token", "quantity": "3000",
     "unit_price": "0.00000015", "cost": "0.000450", "direction": "input"},
]
LATENCY = {"turns": [{"turn": 1, "trigger": "starter", "llm_first_token_ms": 310.5, "tts_first_byte_ms": 120.0},
                     {"turn": 2, "trigger": "speech_final", "stt_final_ms": 180.0, "llm_first_token_ms": 420.0,
                      "tts_first_byte_ms": 95.5, "first_audio_ms": 760.0}],
           "summary": {"llm_first_token_ms": {"p50": 420.0, "p90": 420.0, "count": 1}}}



async def _call(admin: asyncpg.Connection, tenant_id: uuid.UUID, *, status: str = "ended",
                recording: bool = False) -> uuid.UUID:
    call_id = await admin.fetchval(
        """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, provider, started_at, ended_at,
               duration_seconds, to_e164, from_e164, cost, currency, transcripts, cost_breakdown, metadata)
           VALUES (uuid_v7(now()), $1, now(), $2, 'outbound', 'twilio', now(), now(), 67, '+14155550123',
                   '+14155550100', 0.033247, 'USD', $3::jsonb, $4::jsonb, $5::jsonb) RETURNING id""",
        tenant_id, status, msgspec.json.encode(TRANSCRIPT).decode(), msgspec.json.encode(BREAKDOWN).decode(),
        msgspec.json.encode({"latency": LATENCY, "end_reason": "caller_hung_up"}).decode())
    if recording:
        await admin.execute("UPDATE voice_call_logs SET recording_url = '/v1/calls/' || id || '/recording' "
                            "WHERE id = $1", call_id)
    return call_id  # type: ignore[no-any-return]


async def test_the_call_page_shows_its_whole_record(console: Any, tenant: Any, settings: Any, tmp_path: Any,
                                                    admin_conn: asyncpg.Connection) -> None:
    call_id = await _call(admin_conn, tenant.id, recording=True)
    audio = bytes(range(256)) * 40  # 10,240 bytes
    source = tmp_path / "call.mp3"
    source.write_bytes(audio)
    await storage_from_settings(settings).put(audio_key(tenant.id, call_id), source, content_type="audio/mpeg")
    await admin_conn.execute(
        """INSERT INTO voice_call_analysis (tenant_id, call_log_id, call_created_at, status, summary, sentiment,
               lead_category, lead_extraction, success_evaluation, model, cost)
           VALUES ($1, $2, (SELECT created_at FROM voice_call_logs WHERE id = $2), 'completed',
                   'Ann asked about the offer.', 'positive', 'interested', '{"budget": 1200, "callback": "Friday"}',
                   '{"booked": false}', 'gpt-4o-mini', 0.000321)""", tenant.id, call_id)
    await admin_conn.execute(
        """INSERT INTO domain_events (tenant_id, event_type, aggregate_type, aggregate_id, payload)
           VALUES ($1, 'voice_call.cost_recorded', 'voice_call', $2, '{"cost": "0.033247"}'),
                  ($1, 'voice_call.analyzed', 'voice_call', $2, '{"sentiment": "positive"}')""", tenant.id, call_id)
    c = await signed_in(console, tenant.key)
    r = await c.http.get(f"/console/calls/{call_id}")
    assert r.status_code == 200, text_of(r.text)[:1500]
    html = r.text
    reading = text_of(html)
    # The transcript, with times from the start of the call, each playable.
    assert "Agent 0:00 — play from here Hello Ann, this is Ava from Acme." in reading
    assert "Caller 0:03 — play from here Hi! Yes, I wanted to ask about the offer." in reading
    assert "Agent 1:05 — play from here interrupted Of course, the offer runs until" in reading
    assert re.findall(r'data-seek-ms="(\d+)"', html) == ["400", "3100", "65900"]
    assert f'<audio id="recording" controls preload="metadata" src="/console/calls/{call_id}/recording">' in html
    # Latency: an SVG chart and its table.
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in html
    assert html.count('<rect class="lat-') == 5
    assert "Turn 2 (speech_final): LLM first token 420 ms" in html
    # The cost breakdown and its total.
    assert re.search(r'data-figure="cost-total"><strong>0.033247 USD</strong>', html)
    assert "telephony (outbound) twilio — 2 minute 0.014 0.028000" in reading
    assert "llm (input) openai gpt-4o-mini 3000 token 0.00000015 0.000450" in reading  # never 1.5E-7
    # The analysis and the events.
    assert re.search(r'data-analysis="summary">Ann asked about the offer.<', html)
    assert 'data-analysis="sentiment">positive<' in html and 'data-analysis="category">interested<' in html
    assert "budget 1200 callback Friday" in reading
    assert "voice_call.cost_recorded" in html and "voice_call.analyzed" in html
    assert "Live now" not in html

    # The recording under the session, whole or a range (seeking).
    whole = await c.http.get(f"/console/calls/{call_id}/recording")
    assert whole.status_code == 200 and whole.content == audio and whole.headers["accept-ranges"] == "bytes"
    part = await c.http.get(f"/console/calls/{call_id}/recording", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == audio[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(audio)}"
    beyond = await c.http.get(f"/console/calls/{call_id}/recording", headers={"Range": "bytes=999999-"})
    assert beyond.status_code == 416


async def test_calls_without_records_say_why_and_tenants_stay_apart(console: Any, make_tenant: Any,
                                                                     admin_conn: asyncpg.Connection) -> None:
    a, b = await make_tenant(), await make_tenant()
    bare = await admin_conn.fetchval(
        """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, provider, to_e164, metadata)
           VALUES (uuid_v7(now()), $1, now(), 'failed', 'outbound', 'twilio', '+14155550123',
                   '{"end_reason": "invalid_number"}') RETURNING id""", a.id)
    b_call = await _call(admin_conn, b.id, recording=True)
    c = await signed_in(console, a.key)
    reading = text_of((await c.http.get(f"/console/calls/{bare}")).text)
    assert "No transcript: nobody spoke on this call (invalid_number)" in reading
    assert "No recording" in reading and "Not priced yet" in reading and "No analysis yet" in reading
    assert "No latency figures" in reading
    assert (await c.http.get(f"/console/calls/{bare}/recording")).status_code == 404
    for path in (f"/console/calls/{b_call}", f"/console/calls/{b_call}/recording", "/console/calls/nope/recording"):
        assert (await c.http.get(path)).status_code == 404, path
    for action in ("end", "say", "transfer", "listen-token", "analysis/rerun"):
        assert (await c.post(f"/console/calls/{b_call}/{action}", {"text": "hi", "to": "+14155550100"})
                ).status_code == 404, action


async def test_the_live_panel_and_its_controls(console: Any, tenant: Any, client: Any,
                                               admin_conn: asyncpg.Connection) -> None:
    live = await _call(admin_conn, tenant.id, status="ongoing")
    ended = await _call(admin_conn, tenant.id)
    c = await signed_in(console, tenant.key)
    html = (await c.http.get(f"/console/calls/{live}")).text
    assert "Live now" in html and f'data-listen-token-url="/console/calls/{live}/listen-token"' in html
    assert "End the call" in html and "Make the agent say" in html and "Transfer to" in html
    assert "Live now" not in (await c.http.get(f"/console/calls/{ended}")).text
    hx = {"HX-Request": "true", "X-CSRF-Token": c.csrf}
    r = await c.http.post(f"/console/calls/{live}/say", data={"text": "   "}, headers=hx)
    assert r.status_code == 422 and "Make the agent say: write what the agent should say" in r.text
    r = await c.http.post(f"/console/calls/{live}/transfer", data={"to": "555-0100"}, headers=hx)
    assert r.status_code == 422 and "Transfer to: enter the number in international format" in r.text
    r = await c.http.post(f"/console/calls/{ended}/end", headers=hx)
    assert r.status_code == 409 and "the call has ended (status ended)" in r.text
    # Without the CSRF token nothing is done; a viewer sees the call and can listen, but acts on nothing.
    assert (await c.http.post(f"/console/calls/{live}/end", headers={"HX-Request": "true"})).status_code == 403
    viewer = await signed_in(console, (await api_key(client, tenant, "viewer"))["key"])
    page = await viewer.http.get(f"/console/calls/{live}")
    assert "Live now" in page.text and "End the call" not in page.text and "Make the agent say" not in page.text
    for action in ("end", "say", "transfer"):
        assert (await viewer.post(f"/console/calls/{live}/{action}", {"text": "x", "to": "+14155550100"})
                ).status_code == 403, action
    assert (await admin_conn.fetchval("SELECT status FROM voice_call_logs WHERE id = $1", live)) == "ongoing"


async def test_calls_filtered_by_their_analysis(console: Any, tenant: Any, admin_conn: asyncpg.Connection) -> None:
    ids: dict[str, list[uuid.UUID]] = {"positive/hot": [], "negative/cold": [], "none": []}
    for i in range(34):
        kind = "positive/hot" if i % 3 == 0 else ("negative/cold" if i % 3 == 1 else "none")
        call_id = await admin_conn.fetchval(
            """INSERT INTO voice_call_logs (id, tenant_id, created_at, status, direction, provider, to_e164)
               VALUES (uuid_v7(now() - make_interval(mins => $2)), $1, now() - make_interval(mins => $2),
                       CASE WHEN $2 % 2 = 0 THEN 'ended' ELSE 'failed' END, 'outbound', 'twilio', '+14155550123')
               RETURNING id""", tenant.id, i)
        ids[kind].append(call_id)
        if kind != "none":
            sentiment, category = kind.split("/")
            await admin_conn.execute(
                """INSERT INTO voice_call_analysis (tenant_id, call_log_id, call_created_at, status, sentiment,
                       lead_category) SELECT $1, id, created_at, 'completed', $3, $4 FROM voice_call_logs
                   WHERE id = $2""", tenant.id, call_id, sentiment, category)
    c = await signed_in(console, tenant.key)

    def listed(html: str) -> list[uuid.UUID]:
        return [uuid.UUID(x) for x in re.findall(r'<a href="/console/calls/([0-9a-f-]{36})">', html)]

    r = await c.http.get("/console/calls", params={"sentiment": "positive"})
    assert listed(r.text) == ids["positive/hot"]  # 12, newest first
    r = await c.http.get("/console/calls", params={"category": "cold", "status": "ended"})
    ended_cold = [x for i, x in enumerate(ids["negative/cold"]) if (3 * i + 1) % 2 == 0]
    assert listed(r.text) == ended_cold
    r = await c.http.get("/console/calls", params={"sentiment": "negative", "category": "hot"})
    assert listed(r.text) == [] and "No calls match these filters" in r.text
    r = await c.http.get("/console/calls", params={"sentiment": "furious", "category": "x" * 101})
    assert r.status_code == 422 and 'id="sentiment-error">Sentiment: choose positive, neutral or negative' in r.text
    assert 'id="category-error">Category: at most 100 characters' in r.text
