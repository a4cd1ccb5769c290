"""Whole calls through real sockets: the service under uvicorn on 127.0.0.1, the simulator as Twilio / Vonage.

Outbound: POST /v1/calls → the provider adapter → the simulator's REST endpoint → signed status webhooks
(ringing, answered) → media WebSocket (caller audio in, the service's audio back, marks) → stop → final status
with the duration. Inbound: the simulator dials a number through the voice/answer webhook. Also: a socket that
drops mid-call, a provider outage on place-call, busy and no-answer callees, reused media tokens, barge-in
(clear), and draining on shutdown.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voice_service.calls import live
from voice_service.calls.session import MediaSession
from voice_service.settings import Settings
from voice_service.simulator import Scenario
from voice_service.simulator.audio import speech_like, to_wire
from voice_service.simulator.harness import simulated_stack, until
from voice_service.simulator.signing import twilio_signature

VONAGE_SECRET = "vonage-signature-secret-for-the-tests-0123456789"
TWILIO_SHARED_KEY = ("KScalls0123456789", "twilio-webhooks-shared-secret-for-calls")
_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


@pytest.fixture(scope="module")
def stack_overrides() -> dict[str, Any]:
    return {
        "vonage_private_key": _PEM,
        "vonage_signature_secret": VONAGE_SECRET,
        "twilio_webhook_shared_keys": ":".join(TWILIO_SHARED_KEY),
        "drain_timeout_seconds": 2.0,
    }


@pytest.fixture
def echo_handler() -> Any:
    """Make the service play every inbound frame straight back, with a mark every 25 frames."""
    sessions: list[MediaSession] = []
    previous = live.session_handler_factory

    def factory(session: MediaSession) -> EchoHandler:
        sessions.append(session)
        return EchoHandler(session)

    live.session_handler_factory = factory
    yield sessions
    live.session_handler_factory = previous


class EchoHandler:
    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.stopped = False

    async def run(self) -> None:
        frames = 0
        while True:
            payload = await self.queue.get()
            await self.session.send_audio(payload)
            frames += 1
            if frames % 25 == 0:
                await self.session.send_mark(f"m{frames // 25}")

    def on_audio(self, payload: bytes) -> None:
        self.queue.put_nowait(payload)

    def on_dtmf(self, digit: str) -> None:
        return None

    def on_mark(self, name: str) -> None:
        return None

    async def on_stop(self) -> None:
        self.stopped = True


def _phone() -> str:
    return f"+4420794{uuid.uuid4().int % 100000:05d}"


async def _resources(api: httpx.AsyncClient, tenant: Any, provider: str) -> tuple[int, str, str]:
    h = tenant.headers
    r = await api.post("/v1/agents", json={"name": "Ava"}, headers=h)
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    phone = _phone()
    r = await api.post(
        "/v1/numbers",
        json={"phone_number": phone, "provider": provider, "default_agent_id": agent_id},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return agent_id, r.json()["id"], phone


async def _row(admin_conn: asyncpg.Connection, call_id: str) -> asyncpg.Record:
    row = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
    assert row is not None
    return row


async def _settled(
    admin_conn: asyncpg.Connection, call_id: str, *, media: bool = True, within: float = 15.0
) -> asyncpg.Record:
    """The call row once the provider's final status (and, with `media`, the media end) are recorded."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        row = await _row(admin_conn, call_id)
        if row["provider_final_at"] is not None and (row["media_ended_at"] is not None or not media):
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"call did not settle: {dict(row)}")
        await asyncio.sleep(0.05)


def _meta(row: asyncpg.Record) -> dict[str, Any]:
    meta = row["metadata"]
    return meta if isinstance(meta, dict) else msgspec.json.decode(meta)


@pytest.mark.parametrize("provider", ["twilio", "vonage", "simulator"])
async def test_full_outbound_call(
    stack: Any,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    echo_handler: list[MediaSession],
    provider: str,
) -> None:
    sim, svc = stack
    agent_id, number_id, from_phone = await _resources(api, tenant, provider)
    to = _phone()
    sim.scenarios[to] = Scenario(talk_seconds=1.2, hangup_after=0.6, dtmf=((0.3, "7"),))
    r = await api.post(
        "/v1/calls",
        json={
            "agent_id": agent_id,
            "from_number_id": number_id,
            "to": to,
            "variables": {"first_name": "Ada"},
        },
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] in ("pending", "ringing", "ongoing") and created["to"] == to
    assert created["from"] == from_phone and created["provider_call_id"]

    call = await (await sim.wait_for_call(lambda c: c.to == to)).finished()
    assert call.id == created["provider_call_id"]
    if provider == "vonage":
        assert call.statuses == ["started", "ringing", "answered", "human", "completed"]
        assert call.custom_parameters["call_id"] == created["id"] and call.custom_parameters["token"]
    else:
        assert call.statuses == ["initiated", "ringing", "in-progress", "completed"]
        assert call.custom_parameters == {"call_id": created["id"], "token": call.custom_parameters["token"]}
    assert set(call.webhook_statuses) == {204}, call.webhook_statuses
    media = call.media
    assert media.ended_by == "caller" and media.other_messages == []
    assert media.frames_sent == 60 and media.dtmf_sent == ["7"]
    # Audio both ways: the service played every caller frame back, paced in real time, not in a burst.
    sent = to_wire(
        speech_like(1.2, 16000 if provider == "vonage" else 8000),
        16000 if provider == "vonage" else 8000,
        "l16" if provider == "vonage" else "mulaw",
        16000 if provider == "vonage" else 8000,
    )
    assert bytes(media.received_audio) == sent[: len(media.received_audio)] and media.frames_received == 60
    assert media.frame_times[-1] - media.frame_times[0] > 1.0
    assert media.marks_received == ["m1", "m2"] and media.marks_echoed == ["m1", "m2"]
    [session] = [s for s in echo_handler if str(s.call.call_id) == created["id"]]
    assert session.played_marks == ["m1", "m2"] and session.call.variables == {"first_name": "Ada"}
    assert session.format.encoding == ("l16" if provider == "vonage" else "mulaw")

    row = await _settled(admin_conn, created["id"])
    assert row["status"] == "ended" and row["provider"] == provider
    assert row["duration_seconds"] == call.duration == 2
    assert row["started_at"] is not None and row["ended_at"] >= row["started_at"]
    assert row["answered_by"] == "human"
    meta = _meta(row)
    assert meta["media_end_reason"] == ("media_closed" if provider == "vonage" else "media_stopped")
    assert meta["media_inbound_seconds"] == pytest.approx(1.2, abs=0.001)
    if provider == "vonage":
        assert meta["provider_price"]["amount"] == "0.01270000"
    r = await api.get(f"/v1/calls/{created['id']}", headers=tenant.headers)
    assert r.json()["status"] == "ended" and r.json()["duration_seconds"] == 2


@pytest.mark.parametrize("provider", ["twilio", "simulator"])
async def test_inbound_call_and_reused_token(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection, provider: str
) -> None:
    sim, svc = stack
    agent_id, number_id, phone = await _resources(api, tenant, provider)
    # Both speak Twilio's format; the AccountSid says which account (and auth token) the call belongs to.
    account = svc.settings.twilio_account_sid if provider == "twilio" else svc.settings.simulator_account_sid
    call = await sim.inbound_call(
        "twilio",
        to=phone,
        from_="+14155550100",
        account_sid=account,
        scenario=Scenario(talk_seconds=0.6, hangup_after=0.2),
    )
    assert call.answer_status == 200
    assert "<Connect><Stream url=" in (call.answer_body or "") and 'name="token"' in (call.answer_body or "")
    assert call.media.ended_by == "caller" and call.media.frames_sent == 30
    call_id = call.custom_parameters["call_id"]
    row = await _settled(admin_conn, call_id)
    assert (row["direction"], row["status"], row["agent_id"], row["from_number_id"], row["provider"]) == (
        "inbound",
        "ended",
        agent_id,
        uuid.UUID(number_id),
        provider,
    )
    assert (row["from_e164"], row["to_e164"], row["provider_call_id"]) == ("+14155550100", phone, call.id)
    assert _meta(row)["media_inbound_seconds"] == pytest.approx(0.6, abs=0.001)

    # The token was for one socket: a second one with it is refused, and nothing changes.
    before = await _row(admin_conn, call_id)
    media = f"{svc.ws_url}/v1/telephony/twilio/media"  # Twilio signs the upgrade with the account's token
    signature = twilio_signature(sim.twilio_accounts[call.account_sid], media)
    async with connect(media, additional_headers={"X-Twilio-Signature": signature}) as ws:
        await ws.send(
            msgspec.json.encode({"event": "connected", "protocol": "Call", "version": "1.0.0"}).decode()
        )
        await ws.send(
            msgspec.json.encode(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": "MZx",
                    "start": {
                        "streamSid": "MZx",
                        "callSid": call.id,
                        "accountSid": call.account_sid,
                        "tracks": ["inbound"],
                        "customParameters": call.custom_parameters,
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            ).decode()
        )
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1008
    assert dict(await _row(admin_conn, call_id)) == dict(before)


async def test_calls_signed_with_a_webhooks_shared_key(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """An account under Twilio's webhook signature settings: every webhook and the media upgrade are signed with a
    SharedKey, HMAC-SHA256, and the whole call goes through."""
    sim, svc = stack
    _, _, phone = await _resources(api, tenant, "twilio")
    sim.twilio_shared_key = TWILIO_SHARED_KEY
    try:
        call = await sim.inbound_call(
            "twilio",
            to=phone,
            from_="+14155550103",
            account_sid=svc.settings.twilio_account_sid,
            scenario=Scenario(talk_seconds=0.4, hangup_after=0.2),
        )
    finally:
        sim.twilio_shared_key = None
    assert call.answer_status == 200 and "<Stream" in (call.answer_body or "")
    assert call.media.connected and call.media.frames_sent == 20 and call.media.ended_by == "caller"
    assert call.webhook_statuses == [204, 204]
    row = await _settled(admin_conn, call.custom_parameters["call_id"])
    assert (row["status"], row["provider"], row["duration_seconds"]) == ("ended", "twilio", call.duration)


async def test_inbound_vonage_call_answered_by_post(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """Vonage applications can ask for POST answer webhooks: the call's numbers then come in the signed body."""
    sim, _ = stack
    _, _, phone = await _resources(api, tenant, "vonage")
    sim.vonage_answer_method = "POST"
    try:
        call = await sim.inbound_call(
            "vonage", to=phone, from_="+14155550104", scenario=Scenario(talk_seconds=0.4, hangup_after=0.2)
        )
    finally:
        sim.vonage_answer_method = "GET"
    assert call.answer_status == 200 and call.media.connected and call.media.frames_sent == 20
    row = await _settled(admin_conn, call.custom_parameters["call_id"])
    assert (row["direction"], row["status"], row["to_e164"], row["from_e164"]) == (
        "inbound",
        "ended",
        phone,
        "+14155550104",
    )


async def test_inbound_vonage_call(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sim, _ = stack
    _, _, phone = await _resources(api, tenant, "vonage")
    call = await sim.inbound_call(
        "vonage", to=phone, from_="+14155550101", scenario=Scenario(talk_seconds=0.4, hangup_after=0.2)
    )
    assert call.answer_status == 200 and call.media.connected and call.media.frames_sent == 20
    row = await _settled(admin_conn, call.custom_parameters["call_id"])
    assert (row["direction"], row["status"], row["provider"]) == ("inbound", "ended", "vonage")


async def test_inbound_call_to_unknown_number_is_rejected_politely(stack: Any) -> None:
    sim, _ = stack
    call = await sim.inbound_call(
        "twilio", to=_phone(), from_="+14155550102", account_sid=stack[1].settings.twilio_account_sid
    )
    assert call.answer_status == 200 and not call.media.connected
    assert call.rejected_message and "not taking calls" in call.rejected_message
    call = await sim.inbound_call("vonage", to=_phone(), from_="+14155550102")
    assert call.answer_status == 200 and call.rejected_message and "not taking calls" in call.rejected_message


async def test_media_socket_dropping_mid_call_ends_the_call(
    stack: Any, api: httpx.AsyncClient, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    sim, _ = stack
    agent_id, number_id, _ = await _resources(api, tenant, "twilio")
    to = _phone()
    sim.scenarios[to] = Scenario(talk_seconds=5, drop_after=0.5)
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent_id, "from_number_id": number_id, "to": to},
        headers=tenant.headers,
    )
    call = await (await sim.wait_for_call(lambda c: c.to == to)).finished()
    assert call.media.ended_by == "drop"
    row = await _settled(admin_conn, r.json()["id"])
    # Ended by the drop (end_reason), hung up through the provider; the provider's final status still lands.
    assert row["status"] == "ended" and _meta(row)["end_reason"] == "media_disconnected"
    assert call.hangup_requested.is_set()


@pytest.mark.parametrize(("answer", "end_reason"), [("busy", "busy"), ("no-answer", "no_answer")])
async def test_unanswered_calls_are_declined(
    stack: Any,
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    answer: str,
    end_reason: str,
) -> None:
    sim, _ = stack
    agent_id, number_id, _ = await _resources(api, tenant, "twilio")
    to = _phone()
    sim.scenarios[to] = Scenario(answer=answer)  # type: ignore[arg-type]
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent_id, "from_number_id": number_id, "to": to},
        headers=tenant.headers,
    )
    await (await sim.wait_for_call(lambda c: c.to == to)).finished()
    row = await _settled(admin_conn, r.json()["id"], media=False)
    assert (row["status"], _meta(row)["end_reason"], row["duration_seconds"]) == ("declined", end_reason, 0)
    assert row["media_ended_at"] is None and row["started_at"] is None


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_provider_5xx_on_place_call_fails_the_call(
    stack: Any, api: httpx.AsyncClient, tenant: Any, provider: str
) -> None:
    sim, _ = stack
    agent_id, number_id, _ = await _resources(api, tenant, provider)
    to = _phone()
    sim.scenarios[to] = Scenario(rest_status=503)
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent_id, "from_number_id": number_id, "to": to},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["end_reason"], body["provider_call_id"]) == ("failed", "unavailable", None)
    assert body["metadata"]["provider_error"]["status"] == 503
    assert body["metadata"]["provider_error"]["retryable"] is True


class BargeInHandler(EchoHandler):
    """Plays 2 s of audio with a mark every 0.5 s, then barges in (clear) after 0.7 s."""

    async def run(self) -> None:
        fmt = self.session.format
        second = b"\x7f" * 8000 if fmt.encoding == "mulaw" else b"\x01\x00" * fmt.sample_rate
        for i in range(4):
            await self.session.send_audio(second[: len(second) // 2])
            await self.session.send_mark(f"s{i}")
        await asyncio.sleep(0.7)
        await self.session.clear()
        self.played_at_clear = list(self.session.played_marks)
        self.cleared_ok = not await self.session.wait_for_mark("s3")


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_barge_in_clear_drops_unplayed_audio(
    stack: Any, api: httpx.AsyncClient, tenant: Any, provider: str
) -> None:
    sim, _ = stack
    handlers: list[BargeInHandler] = []
    previous = live.session_handler_factory
    live.session_handler_factory = lambda s: handlers.append(BargeInHandler(s)) or handlers[-1]
    try:
        agent_id, number_id, _ = await _resources(api, tenant, provider)
        to = _phone()
        sim.scenarios[to] = Scenario(talk_seconds=1.0, hangup_after=1.0)
        await api.post(
            "/v1/calls",
            json={"agent_id": agent_id, "from_number_id": number_id, "to": to},
            headers=tenant.headers,
        )
        call = await (await sim.wait_for_call(lambda c: c.to == to)).finished()
    finally:
        live.session_handler_factory = previous
    [handler] = handlers
    # 0.7 s in, with a 60 ms lead: about 0.76 s of the 2 s reached the caller; s0 (0.5 s) had played.
    assert 0.6 <= call.media.received_seconds <= 0.9, call.media.received_seconds
    assert call.media.clears == 1 and call.media.other_messages == []
    assert handler.played_at_clear == ["s0"] and handler.session.played_marks == ["s0"]
    assert handler.cleared_ok


async def test_shutdown_drains_live_calls(
    settings: Settings, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    async with (
        simulated_stack(settings, vonage_signature_secret=VONAGE_SECRET, drain_timeout_seconds=2.0) as (
            sim,
            svc,
        ),
        httpx.AsyncClient(base_url=svc.base_url, timeout=30) as api,
    ):
        agent_id, number_id, phone = await _resources(api, tenant, "twilio")
        account = svc.settings.twilio_account_sid
        short = await sim.start_inbound_call(
            "twilio",
            to=phone,
            from_="+14155550103",
            account_sid=account,
            scenario=Scenario(talk_seconds=1.0, hangup_after=0.1),
        )
        long = await sim.start_inbound_call(
            "twilio",
            to=phone,
            from_="+14155550104",
            account_sid=account,
            scenario=Scenario(talk_seconds=30, hangup_after=None),
        )
        await until(lambda: len(svc.live_calls) >= 2)

        svc.server.should_exit = True  # what uvicorn does on SIGTERM
        await until(lambda: svc.live_calls.draining)
        # Draining: no new calls, a polite spoken rejection for callers, 503 for the API.
        late = await sim.inbound_call("twilio", to=phone, from_="+14155550105", account_sid=account)
        assert late.rejected_message and "cannot take your call" in late.rejected_message
        r = await api.post(
            "/v1/calls",
            json={"agent_id": agent_id, "from_number_id": number_id, "to": _phone()},
            headers=tenant.headers,
        )
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")

        await short.finished(10)
        assert short.media.ended_by == "caller"  # finished on its own while the service drained
        await long.finished(10)
        assert long.media.ended_by in ("service", "hangup")
    long_row = await _row(admin_conn, long.custom_parameters["call_id"])
    assert (long_row["status"], _meta(long_row)["end_reason"]) == ("ended", "shutdown")
    short_row = await _row(admin_conn, short.custom_parameters["call_id"])
    assert short_row["media_ended_at"] is not None and _meta(short_row)["media_end_reason"] == "media_stopped"


async def test_simulate_call_cli(stack: Any, api: httpx.AsyncClient, tenant: Any, tmp_path: Any) -> None:
    """`voice-service simulate call` places an inbound call (WAV caller) and prints what happened."""
    import os
    import sys
    import wave

    _, svc = stack
    _, _, phone = await _resources(api, tenant, "simulator")
    wav_path = tmp_path / "caller.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(speech_like(0.5, 16000))
    env = {
        **os.environ,
        "PUBLIC_BASE_URL": svc.base_url,
        "LOG_LEVEL": "WARNING",
        "SIMULATOR_ACCOUNT_SID": svc.settings.simulator_account_sid,
        "SIMULATOR_AUTH_TOKEN": svc.settings.simulator_auth_token,
        "DATABASE_URL": "postgresql://unused",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from voice_service.cli import main; sys.exit(main())",
        "simulate",
        "call",
        "--to",
        phone,
        "--wav",
        str(wav_path),
        "--hangup-after",
        "0.2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = msgspec.json.decode(out.splitlines()[-1])
    assert result["answer_status"] == 200 and result["statuses"] == ["in-progress", "completed"]
    assert result["media"]["frames_sent"] == 25 and result["media"]["ended_by"] == "caller"
    assert result["call_id"] and result["webhook_statuses"] == [204, 204]
