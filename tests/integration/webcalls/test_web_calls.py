"""Web calls through the real service: POST /v1/web-calls → a Python WebSocket client streams a WAV of speech-like
audio over /v1/web-calls/{id}/socket as a browser would → the conversation engine (fake Deepgram, OpenAI and TTS
servers speaking the real protocols) answers → the call log (direction `web`), then the post-call jobs run by a
real pgqueuer worker: billing without a telephony leg, the analysis, the recording.

And what must be refused: a token used twice, an expired or wrong token, a page from another origin, another
tenant's agent, a viewer, an empty wallet.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from tests.fakes.openai import ToolCall, ToolCalls
from tests.fakes.server import LocalServer, PathRouter
from tests.support.conversation import ENGINE, Fakes, caller_wav
from tests.support.pipeline import credit, drop_jobs, wait_for, worker
from tests.support.recordings import decode
from tests.support.web_call_client import read_wav, talk, web_call
from voice_service.billing.pipeline import POST_CALL_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.calls import live
from voice_service.conversation import install
from voice_service.recordings.service import ENCODE_JOB
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service
from voice_service.webcalls.service import EXPIRE_JOB

SITE = "https://shop.example.com"
_enc = msgspec.json.Encoder()
ANALYSIS = _enc.encode(
    {
        "summary": "The caller booked a table for two.",
        "sentiment": "positive",
        "lead_category": "hot",
        "success_evaluation": {"success": True, "score": 9, "reason": "A table was booked."},
        "lead_extraction": {},
    }
).decode()


def _analysis_or_okay(body: dict[str, Any]) -> str:
    return ANALYSIS if body.get("response_format") else "Okay."


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    f = Fakes()
    router = PathRouter({"/v1/listen": f.deepgram, "/v1/speak": f.tts, "/v1/chat": f.openai})
    async with LocalServer(router) as srv:
        f.url = srv.http_url
        yield f


@pytest.fixture(scope="module")
async def svc(settings: Settings, fakes: Fakes) -> AsyncIterator[RunningService]:
    def make(base_url: str) -> Settings:
        return msgspec.structs.replace(
            settings,
            public_base_url=base_url,
            drain_timeout_seconds=2.0,
            deepgram_api_key="test-key",
            deepgram_base_url=fakes.url.replace("http://", "ws://"),
            deepgram_http_url=fakes.url,
            openai_api_key="test-key",
            openai_base_url=f"{fakes.url}/v1",
            default_tts_provider="deepgram",
            default_tts_voice="aura-2-thalia-en",
            cors_allowed_origins="https://partner.example.org",
        )

    async with running_service(make) as running:
        yield running


@pytest.fixture
async def engine(svc: RunningService) -> AsyncIterator[None]:
    previous = install(svc.app.state.runtime, ENGINE)
    yield
    live.session_handler_factory = previous


@pytest.fixture
async def api(svc: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, ENCODE_JOB, EXPIRE_JOB, "events.deliver")


async def _agent(api: httpx.AsyncClient, tenant: Any, **fields: Any) -> dict[str, Any]:
    body = {"name": "Ava", "agent_instructions": "You book tables.", **fields}
    r = await api.post("/v1/agents", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _web_call(api: httpx.AsyncClient, tenant: Any, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/web-calls", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _row(admin: asyncpg.Connection, call_id: str) -> dict[str, Any]:
    row = await admin.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
    assert row is not None
    data = dict(row)
    for key in ("metadata", "transcripts", "cost_breakdown"):
        if isinstance(data[key], str):
            data[key] = json.loads(data[key])
    return data


async def test_a_web_call_is_answered_logged_billed_analysed_and_recorded(
    svc: RunningService,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    no_leftover_jobs: None,
) -> None:
    runtime = svc.app.state.runtime
    await credit(runtime, tenant.id, "10")
    fakes.reset(
        script=["I'd like a table for two.", "Thanks, bye."],
        replies=["Sure, for what time?", ToolCalls([ToolCall("end_call", {})], text="Booked. Goodbye!")],
    )
    fakes.openai.responder = _analysis_or_okay
    agent = await _agent(
        api,
        tenant,
        inbound_starter_prompt="Hi {{name}}, this is Ava from Bistro Uno.",
        config={"transfer_targets": [{"name": "Front desk", "phone": "+14155550100"}]},
    )
    created = await _web_call(api, tenant, agent_id=agent["id"], variables={"name": "Grace"})
    assert created["status"] == "pending" and created["protocol"] == "web-call.v1"
    assert created["socket_url"] == f"{svc.ws_url}/v1/web-calls/{created['call_id']}/socket"
    pcm = read_wav(
        caller_wav(
            tmp_path, [("silence", 1.5), ("speech", 0.8), ("silence", 2.5), ("speech", 0.8), ("silence", 4)]
        )
    )

    client = await talk(created["socket_url"], created["token"], pcm)

    # What the browser got: the greeting, the answers and the goodbye as audio, both sides' words live, the end.
    assert client.events[0] == {
        "type": "started",
        "call_id": created["call_id"],
        "format": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
    }
    agent_lines = ["Hi Grace, this is Ava from Bistro Uno.", "Sure, for what time?", "Booked. Goodbye!"]
    assert client.transcripts("agent", final=True) == agent_lines
    assert client.transcripts("caller", final=True) == ["I'd like a table for two.", "Thanks, bye."]
    assert client.transcripts(
        "caller", final=False
    )  # the words as the STT heard them, before the turn closed
    assert client.transcripts("agent", final=False)[0] == agent_lines[0]
    # Sentence by sentence as each starts playing; the partial line grows with them.
    assert [e["text"] for e in client.of_type("agent_text")] == [*agent_lines[:2], "Booked.", "Goodbye!"]
    assert client.transcripts("agent", final=False)[-2:] == ["Booked.", "Booked. Goodbye!"]
    assert client.of_type("end") == [{"type": "end", "reason": "agent_ended"}]
    assert client.close_code == 1000
    spoken = sum(len(t) for t in agent_lines)
    assert client.audio_bytes / 32000 == pytest.approx(spoken * 0.01, abs=0.3)
    assert len(client.marks_echoed) == 4 and client.clears == 0  # one mark per sentence, each played
    # The LLM was told where the caller is, and had no transfer to offer.
    request = fakes.openai.chat_requests()[0].json
    assert (
        "from a web page" in request["messages"][0]["content"]
        and "Front desk" not in request["messages"][0]["content"]
    )
    assert [tool["function"]["name"] for tool in request["tools"]] == ["end_call"]

    # The call log: a web call, no carrier, both sides of the transcript, metered without telephony.
    row = await _row(admin_conn, created["call_id"])
    meta = row["metadata"]
    assert (row["direction"], row["provider"], row["from_e164"], row["to_e164"]) == ("web", None, None, None)
    assert row["status"] == "ended" and meta["end_reason"] == "agent_ended"
    assert row["started_at"] is not None and row["media_ended_at"] is not None
    assert row["provider_final_at"] is not None and row["duration_seconds"] > 0
    assert [(t["role"], t["text"]) for t in row["transcripts"]] == [
        ("agent", agent_lines[0]),
        ("caller", "I'd like a table for two."),
        ("agent", agent_lines[1]),
        ("caller", "Thanks, bye."),
        ("agent", agent_lines[2]),
    ]
    assert "telephony" not in meta["usage"] and meta["usage"]["stt"] and meta["usage"]["tts"]
    assert meta["variables"] == {"name": "Grace"}

    # The post-call jobs, as the service's workers run them: billed (no telephony item), analysed, recorded.
    async with worker(runtime, [POST_CALL_JOB, ANALYSIS_JOB, ENCODE_JOB]):

        async def done() -> bool:
            r = await _row(admin_conn, created["call_id"])
            analysis = await admin_conn.fetchval(
                "SELECT status FROM voice_call_analysis WHERE call_log_id = $1", uuid.UUID(created["call_id"])
            )
            return r["cost"] is not None and r["recording_url"] is not None and analysis == "completed"

        await wait_for(done, within=30)
    row = await _row(admin_conn, created["call_id"])
    categories = {item["category"] for item in row["cost_breakdown"]}
    assert categories == {"stt", "llm", "tts"} and row["cost"] > 0
    usage_event = await admin_conn.fetchrow(
        "SELECT total_cost, ledger_transaction_id FROM billing_usage_events WHERE idempotency_key = $1",
        f"voice_call:{created['call_id']}",
    )
    assert usage_event["total_cost"] == row["cost"] and usage_event["ledger_transaction_id"] is not None
    call = (await api.get(f"/v1/calls/{created['call_id']}", headers=tenant.headers)).json()
    assert call["direction"] == "web" and call["recording_url"] == f"/v1/calls/{created['call_id']}/recording"
    analysis = (await api.get(f"/v1/calls/{created['call_id']}/analysis", headers=tenant.headers)).json()
    assert analysis["summary"] == "The caller booked a table for two."
    recording = await api.get(call["recording_url"], headers=tenant.headers)
    assert recording.status_code == 200 and recording.headers["content-type"] == "audio/mpeg"
    # Two channels (caller left, agent right), each heard where the transcript places its turns.
    audio = decode(recording.content)
    assert audio.channels == 2

    def loudness(channel: int, start_ms: int, end_ms: int) -> float:
        part = audio.samples[channel, start_ms * audio.rate // 1000 : end_ms * audio.rate // 1000]
        return float(np.sqrt(np.mean(part**2))) if part.size else 0.0

    for turn in row["transcripts"]:
        channel = 0 if turn["role"] == "caller" else 1
        assert loudness(channel, turn["start_ms"], turn["end_ms"]) > 0.01, turn
    assert loudness(0, 200, 1200) < 0.01  # the caller was silent for the first 1.5 s
    listed = (await api.get("/v1/calls?direction=web", headers=tenant.headers)).json()
    assert [c["id"] for c in listed["items"]] == [created["call_id"]]


async def test_barge_in_clears_the_browser_and_hanging_up_ends_the_call(
    svc: RunningService,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    no_leftover_jobs: None,
) -> None:
    await credit(svc.app.state.runtime, tenant.id, "10")
    starter = "Hello there. Let me tell you all about the spring menu we are serving from next week onwards."
    fakes.reset(script=["Wait, I have a question."], replies=["Of course, go ahead."], seconds_per_char=0.06)
    agent = await _agent(api, tenant, outbound_starter_prompt=starter, config={"interrupt_min_words": 2})
    created = await _web_call(api, tenant, agent_id=agent["id"])
    pcm = read_wav(caller_wav(tmp_path, [("silence", 1.5), ("speech", 1.0), ("silence", 6.0)]))

    async with web_call(created["socket_url"]) as client:
        await client.start(created["token"])
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.receive())
            tg.create_task(client.echo_marks())
            talking = tg.create_task(client.speak(pcm))

            async def answered() -> bool:
                return "Of course, go ahead." in client.transcripts("agent", final=True)

            await wait_for(answered, within=20)
            await client.send_json({"type": "stop"})  # the caller hangs up
            await client.wait_ended()
            talking.cancel()

    assert client.clears == 1  # the agent stopped at once when the caller spoke over it
    first = next(e for e in client.of_type("transcript") if e["final"])
    assert first["role"] == "agent" and first["interrupted"] is True and first["text"] == "Hello there."
    assert client.of_type("end") == [{"type": "end", "reason": "caller_hung_up"}]
    row = await _row(admin_conn, created["call_id"])
    assert row["status"] == "ended" and row["metadata"]["end_reason"] == "caller_hung_up"
    assert row["metadata"]["conversation"]["barge_ins"] == 1
    assert [(t["role"], t["interrupted"]) for t in row["transcripts"]][:2] == [
        ("agent", True),
        ("caller", False),
    ]


async def test_the_token_works_once_and_not_after_it_expires(
    svc: RunningService,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    no_leftover_jobs: None,
) -> None:
    await credit(svc.app.state.runtime, tenant.id, "10")
    fakes.reset()
    agent = await _agent(api, tenant, inbound_starter_prompt="Hello.")

    # A wrong token: refused, with the reason in the close frame.
    created = await _web_call(api, tenant, agent_id=agent["id"])
    async with web_call(created["socket_url"]) as client:
        await client.ws.send(
            json.dumps(
                {
                    "type": "start",
                    "token": "not-the-token",
                    "format": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
                }
            )
        )
        await client.receive()
    assert client.close_code == 1008 and "token is wrong, used or expired" in client.close_reason

    # Used once: a second socket with the same token (while the first is live, and after it) is refused.
    created = await _web_call(api, tenant, agent_id=agent["id"])
    async with web_call(created["socket_url"]) as first:
        assert (await first.start(created["token"]))["type"] == "started"
        with pytest.raises(InvalidStatus) as refused:
            async with web_call(created["socket_url"]) as second:
                await second.start(created["token"])
        assert refused.value.response.status_code == 403
        await first.send_json({"type": "stop"})
        await first.receive()
    assert first.of_type("end") == [{"type": "end", "reason": "caller_hung_up"}]
    with pytest.raises(InvalidStatus):
        async with web_call(created["socket_url"]) as again:
            await again.start(created["token"])

    # Expired: refused; the call, which never connected, is cancelled by its expiry job.
    created = await _web_call(api, tenant, agent_id=agent["id"])
    call_id = uuid.UUID(created["call_id"])
    await admin_conn.execute(
        "UPDATE voice_call_media_tokens SET expires_at = $2 WHERE call_id = $1",
        call_id,
        datetime.now(UTC) - timedelta(seconds=1),
    )
    async with web_call(created["socket_url"]) as client:
        await client.ws.send(
            json.dumps(
                {
                    "type": "start",
                    "token": created["token"],
                    "format": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
                }
            )
        )
        await client.receive()
    assert client.close_code == 1008 and "expired" in client.close_reason
    row = await _row(admin_conn, created["call_id"])
    assert row["status"] == "pending"
    job = await admin_conn.fetchrow(
        "SELECT execute_after FROM pgqueuer WHERE entrypoint = $1 AND dedupe_key = $2",
        EXPIRE_JOB,
        f"web_call_expire:{call_id}",
    )
    assert job is not None
    async with worker(svc.app.state.runtime, [EXPIRE_JOB]):
        await admin_conn.execute(
            "UPDATE pgqueuer SET execute_after = now() WHERE dedupe_key = $1", f"web_call_expire:{call_id}"
        )

        async def cancelled() -> bool:
            return (await _row(admin_conn, created["call_id"]))["status"] == "cancelled"

        await wait_for(cancelled)
    row = await _row(admin_conn, created["call_id"])
    assert row["metadata"]["end_reason"] == "not_connected" and row["provider_final_at"] is not None


async def test_a_start_that_breaks_the_protocol_is_refused_with_its_reason(
    svc: RunningService, engine: None, api: httpx.AsyncClient, tenant: Any, no_leftover_jobs: None
) -> None:
    await credit(svc.app.state.runtime, tenant.id, "10")
    agent = await _agent(api, tenant)
    for first_message, reason in [
        (
            {"type": "start", "token": "x", "format": {"encoding": "pcm_s16le", "sample_rate": 48000}},
            "format.sample_rate must be 16000",
        ),
        ({"type": "start", "token": "x"}, "bad start"),
        ({"type": "dtmf", "digit": "1"}, "the first message must be `start`"),
    ]:
        created = await _web_call(api, tenant, agent_id=agent["id"])
        async with web_call(created["socket_url"]) as client:
            await client.send_json(first_message)
            await client.receive()
        assert client.close_code == 1008 and reason in client.close_reason, (
            first_message,
            client.close_reason,
        )


async def test_pages_of_other_sites_cannot_open_the_socket(
    svc: RunningService,
    engine: None,
    fakes: Fakes,
    api: httpx.AsyncClient,
    tenant: Any,
    no_leftover_jobs: None,
) -> None:
    await credit(svc.app.state.runtime, tenant.id, "10")
    fakes.reset()
    agent = await _agent(api, tenant, inbound_starter_prompt="Hello.")
    own = svc.base_url
    allowed = [
        (own, []),  # the service's own pages (the console)
        ("https://partner.example.org", []),  # CORS_ALLOWED_ORIGINS
        (SITE, [SITE]),  # the call's own allowed_origins
    ]
    for origin, per_call in allowed:
        created = await _web_call(api, tenant, agent_id=agent["id"], allowed_origins=per_call)
        async with web_call(created["socket_url"], origin=origin) as client:
            assert (await client.start(created["token"]))["type"] == "started", origin
            await client.send_json({"type": "stop"})
            await client.receive()
        row = await api.get(f"/v1/calls/{created['call_id']}", headers=tenant.headers)
        assert row.json()["metadata"]["web"]["origin"] == origin
    for origin, per_call in [("https://evil.example", [SITE]), ("null", []), (SITE, [])]:
        created = await _web_call(api, tenant, agent_id=agent["id"], allowed_origins=per_call)
        with pytest.raises(InvalidStatus) as refused:
            async with web_call(created["socket_url"], origin=origin) as client:
                await client.start(created["token"])
        assert refused.value.response.status_code == 403, origin


async def test_who_may_create_a_web_call(
    svc: RunningService,
    api: httpx.AsyncClient,
    make_tenant: Any,
    admin_conn: asyncpg.Connection,
    no_leftover_jobs: None,
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    agent = await _agent(api, owner)
    others_agent = await _agent(api, other)

    r = await api.post("/v1/web-calls", json={"agent_id": agent["id"]}, headers=owner.headers)
    assert r.status_code == 402 and "top the wallet up" in r.json()["detail"]  # an empty wallet
    await credit(svc.app.state.runtime, owner.id, "5")

    r = await api.post("/v1/web-calls", json={"agent_id": others_agent["id"]}, headers=owner.headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await api.post("/v1/web-calls", json={"agent_id": agent["id"]})
    assert r.status_code == 401
    r = await api.post(
        "/v1/web-calls", json={"agent_id": agent["id"], "lead_id": str(uuid.uuid4())}, headers=owner.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lead_id"
    r = await api.post(
        "/v1/web-calls",
        json={"agent_id": agent["id"], "allowed_origins": ["shop.example.com/x"]},
        headers=owner.headers,
    )
    assert r.status_code == 400 and "allowed_origins" in r.text
    r = await api.post("/v1/web-calls", json={"agent_id": agent["id"], "agnet": 1}, headers=owner.headers)
    assert r.status_code == 400 and "agnet" in r.text

    viewer = await api.post("/v1/api-keys", json={"name": "viewer", "role": "viewer"}, headers=owner.headers)
    assert viewer.status_code == 201, viewer.text
    r = await api.post(
        "/v1/web-calls",
        json={"agent_id": agent["id"]},
        headers={"Authorization": f"Bearer {viewer.json()['key']}"},
    )
    assert r.status_code == 403

    r = await api.post("/v1/web-calls", json={"agent_id": agent["id"]}, headers=owner.headers)
    assert r.status_code == 201 and r.headers["location"] == f"/v1/calls/{r.json()['call_id']}"
    # The other tenant sees nothing of it.
    assert (await api.get(f"/v1/calls/{r.json()['call_id']}", headers=other.headers)).status_code == 404


async def test_the_protocol_is_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/v1/web-calls"]["post"]
    assert operation["operationId"] == "createWebCall"
    for words in ('"type": "start"', '"type": "clear"', '"type": "end"', "pcm_s16le", "allowed_origins"):
        assert words in operation["description"]


async def test_the_console_creates_web_calls_for_its_session(
    svc: RunningService, api: httpx.AsyncClient, make_tenant: Any, no_leftover_jobs: None
) -> None:
    """The agent page's button: the console's session (and CSRF token) authorises creating the web call, with the
    same rules as the API."""
    from tests.support.console import Console

    owner, other = await make_tenant(), await make_tenant()
    agent = (await api.post("/v1/agents", json={"name": "Ava"}, headers=owner.headers)).json()
    others_agent = (await api.post("/v1/agents", json={"name": "Bo"}, headers=other.headers)).json()
    viewer = (
        await api.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=owner.headers)
    ).json()
    await credit(svc.app.state.runtime, owner.id, "5")

    async with (
        httpx.AsyncClient(base_url=svc.base_url) as owner_http,
        httpx.AsyncClient(base_url=svc.base_url) as viewer_http,
    ):
        console = Console(owner_http)
        assert (await console.sign_in(owner.key)).status_code == 303
        page = await console.http.get(f"/console/agents/{agent['id']}")
        assert page.status_code == 200 and "Talk to this agent" in page.text and "webcall.js" in page.text
        assert "microphone=(self)" in page.headers["permissions-policy"]

        path = f"/console/agents/{agent['id']}/web-call"
        r = await console.http.post(path, headers={"X-CSRF-Token": console.csrf, "HX-Request": "true"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["socket_path"] == f"/v1/web-calls/{created['call_id']}/socket" and created["token"]
        call = (await api.get(f"/v1/calls/{created['call_id']}", headers=owner.headers)).json()
        assert (call["direction"], call["status"], call["agent_id"]) == ("web", "pending", agent["id"])

        r = await console.http.post(path, headers={"HX-Request": "true"})  # no CSRF token
        assert r.status_code == 403
        r = await console.http.post(
            f"/console/agents/{others_agent['id']}/web-call",
            headers={"X-CSRF-Token": console.csrf, "HX-Request": "true"},
        )
        assert r.status_code == 404

        as_viewer = Console(viewer_http)
        assert (await as_viewer.sign_in(viewer["key"])).status_code == 303
        page = await as_viewer.http.get(f"/console/agents/{agent['id']}")
        assert page.status_code == 200 and "Talk to this agent" not in page.text
        r = await as_viewer.http.post(path, headers={"X-CSRF-Token": as_viewer.csrf, "HX-Request": "true"})
        assert r.status_code == 403 and "member" in r.text
