"""A carrier is one module plus one registry call: JSONWire (tests/fakes/jsonwire_carrier.py), a carrier that only
the tests know, is registered and configured through its own setting names (environment variables), and then
places, answers and streams calls through the real service with no other change anywhere.

What the service must derive from the carrier's module alone: its webhook routes (and their OpenAPI entries), the
callback URLs it hands the carrier, the client it builds from the carrier's settings, the signature check, the
inbound parsing, the status mapping and the media socket with the carrier's codec.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from providers.telephony import registry
from tests.fakes import jsonwire_carrier
from tests.fakes.jsonwire_server import FakeJsonWire, caller_frames
from voice_service.calls import live
from voice_service.calls.session import MediaSession
from voice_service.settings import Settings
from voice_service.simulator.harness import RunningService, running_service

API_KEY = "jw-api-key-0123"
SECRET = "jw-webhook-secret-0123456789"


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[tuple[FakeJsonWire, RunningService]]:
    """This module's stack: the JSONWire fake carrier (instead of the simulator) and the service that knows it."""
    async with FakeJsonWire(api_key=API_KEY, secret=SECRET) as fake:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("JSONWIRE_BASE_URL", fake.base_url)
            env.setenv("JSONWIRE_API_KEY", API_KEY)
            env.setenv("JSONWIRE_SECRET", SECRET)
            registry.register(jsonwire_carrier.CARRIER)  # the one line that adds the carrier
            try:
                async with running_service(
                    lambda base: msgspec.structs.replace(settings, public_base_url=base)
                ) as svc:
                    yield fake, svc
            finally:
                registry.unregister("jsonwire")


class Echo:
    """Session handler: keeps every frame that reaches the session and plays it back, with a mark at the end."""

    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.received = bytearray()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.marks: list[str] = []

    async def run(self) -> None:
        sent = 0
        while True:
            await self.session.send_audio(await self.queue.get())
            sent += 1
            if sent == 10:
                await self.session.send_mark("ten")

    def on_audio(self, payload: bytes) -> None:
        self.received += payload
        self.queue.put_nowait(payload)

    def on_dtmf(self, digit: str) -> None:
        return None

    def on_mark(self, name: str) -> None:
        self.marks.append(name)

    async def on_stop(self) -> None:
        return None


@pytest.fixture
def echoes() -> AsyncIterator[list[Echo]]:
    handlers: list[Echo] = []
    previous = live.session_handler_factory

    def factory(session: MediaSession) -> Echo:
        handlers.append(Echo(session))
        return handlers[-1]

    live.session_handler_factory = factory
    yield handlers  # type: ignore[misc]
    live.session_handler_factory = previous


async def _number(api: httpx.AsyncClient, tenant: Any) -> tuple[int, str, str]:
    r = await api.post("/v1/agents", json={"name": "Wire"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    phone = f"+4420794{uuid.uuid4().int % 100000:05d}"
    r = await api.post(
        "/v1/numbers",
        json={"phone_number": phone, "provider": "jsonwire", "default_agent_id": agent_id},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return agent_id, r.json()["id"], phone


async def _settled(admin_conn: asyncpg.Connection, call_id: str) -> asyncpg.Record:
    for _ in range(500):
        row = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
        if row is not None and row["provider_final_at"] is not None and row["media_ended_at"] is not None:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_id} did not settle")


def _meta(row: asyncpg.Record) -> dict[str, Any]:
    meta = row["metadata"]
    return meta if isinstance(meta, dict) else msgspec.json.decode(meta)


async def test_an_outbound_call_through_a_registered_carrier(
    stack: tuple[FakeJsonWire, RunningService],
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    echoes: list[Echo],
) -> None:
    fake, svc = stack
    agent_id, number_id, phone = await _number(api, tenant)
    r = await api.post(
        "/v1/calls",
        json={"agent_id": agent_id, "from_number_id": number_id, "to": "+14155550123"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    [wire] = [c for c in fake.calls.values() if c.params.get("call_id") == created["id"]]
    await asyncio.wait_for(wire.done.wait(), 30)
    assert wire.error is None and (wire.to, wire.from_) == ("+14155550123", phone)
    # The callback URLs come from the carrier's declared routes.
    assert wire.status_url == f"{svc.base_url}/v1/telephony/jsonwire/progress?call_id={created['id']}"
    assert wire.webhook_statuses == [204, 204, 204]  # ringing, answered, ended: all verified and applied
    # Media both ways: every caller frame reached the session (the carrier's codec), and the session's audio
    # and mark reached the carrier, which echoed the mark.
    [echo] = [e for e in echoes if str(e.session.call.call_id) == created["id"]]
    expected = b"".join(caller_frames(fake.frames))
    assert bytes(echo.received) == expected == bytes(wire.sent_audio)
    assert echo.session.format.encoding == "l16" and echo.session.format.sample_rate == 8000
    assert bytes(wire.received_audio) == expected[: len(wire.received_audio)] and len(wire.received_audio) > 0
    assert wire.marks == ["ten"] and echo.marks == ["ten"]

    row = await _settled(admin_conn, created["id"])
    assert (row["provider"], row["provider_call_id"], row["direction"]) == ("jsonwire", wire.id, "outbound")
    assert (row["status"], row["duration_seconds"]) == ("ended", wire.seconds)
    assert row["started_at"] is not None and row["ended_at"] >= row["started_at"]
    meta = _meta(row)
    assert meta["media_end_reason"] == "media_stopped"
    assert meta["media_inbound_seconds"] == pytest.approx(fake.frames * 0.02, abs=0.001)


async def test_an_inbound_call_through_a_registered_carrier(
    stack: tuple[FakeJsonWire, RunningService],
    api: httpx.AsyncClient,
    tenant: Any,
    admin_conn: asyncpg.Connection,
    echoes: list[Echo],
) -> None:
    fake, svc = stack
    agent_id, number_id, phone = await _number(api, tenant)
    wire = await fake.dial(svc.base_url, to=phone, from_="+14155550177")
    assert wire.error is None and wire.answer["action"] == "stream"
    assert wire.answer["url"] == f"{svc.ws_url}/v1/telephony/jsonwire/stream"
    call_id = wire.params["call_id"]
    [echo] = [e for e in echoes if str(e.session.call.call_id) == call_id]
    assert bytes(echo.received) == bytes(wire.sent_audio) and len(wire.received_audio) > 0
    row = await _settled(admin_conn, call_id)
    assert (row["provider"], row["direction"], row["agent_id"], row["from_number_id"]) == (
        "jsonwire",
        "inbound",
        agent_id,
        uuid.UUID(number_id),
    )
    assert (row["from_e164"], row["to_e164"], row["provider_call_id"], row["status"]) == (
        "+14155550177",
        phone,
        wire.id,
        "ended",
    )
    # A number nobody takes calls on: the carrier's own rejection document.
    rejected = await fake.dial(svc.base_url, to="+14155550000", from_="+14155550177")
    assert rejected.answer["action"] == "say" and "not taking calls" in rejected.answer["text"]


async def test_the_carriers_routes_check_its_signature_and_are_documented(
    stack: tuple[FakeJsonWire, RunningService], api: httpx.AsyncClient
) -> None:
    _, svc = stack
    url = f"{svc.base_url}/v1/telephony/jsonwire/progress"
    body = b'{"id": "JWforged", "state": "ended", "seconds": 1}'
    forged = jsonwire_carrier.sign("not-the-secret", "POST", url, body)
    r = await api.post(url, content=body, headers={jsonwire_carrier.SIGNATURE_HEADER: forged})
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    schema = (await api.get("/schema/openapi.json")).json()
    assert schema["paths"]["/v1/telephony/jsonwire/incoming"]["post"]["operationId"] == "jsonwireIncoming"
    assert schema["paths"]["/v1/telephony/jsonwire/progress"]["post"]["operationId"] == "jsonwireProgress"
