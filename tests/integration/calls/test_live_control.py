"""Live call control across instances: two real service instances (uvicorn on 127.0.0.1) on one database, a call
whose media socket is on instance B, and every command and the listen socket driven through instance A — routed by
PostgreSQL LISTEN/NOTIFY. The carriers are the simulator's Twilio and Vonage; STT, LLM and TTS are the local fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.batches import credit, distinct_phones, drop_batch_jobs
from tests.support.conversation import (
    ENGINE,
    VONAGE_PEM,
    VONAGE_SECRET,
    Fakes,
    caller_wav,
    place,
    settled,
)
from tests.support.pipeline import insert_call
from voice_service.batches.dispatcher import run_tick
from voice_service.conversation import install
from voice_service.settings import Settings
from voice_service.simulator import Scenario, SimCall, Simulator
from voice_service.simulator.harness import RunningService, running_service, until

TRANSFER_TO = "+14155550123"
LATENCIES: dict[str, list[float]] = {}


@dataclass
class Pair:
    sim: Simulator
    a: RunningService
    b: RunningService
    api_a: httpx.AsyncClient
    api_b: httpx.AsyncClient


@pytest.fixture(scope="module")
async def pair(settings: Settings, fakes: Fakes) -> AsyncIterator[Pair]:  # noqa: F811
    base = msgspec.structs.replace(
        settings,
        vonage_private_key=VONAGE_PEM,
        vonage_signature_secret=VONAGE_SECRET,
        drain_timeout_seconds=2.0,
        deepgram_api_key="test-key",
        deepgram_base_url=fakes.url.replace("http://", "ws://"),
        deepgram_http_url=fakes.url,
        openai_api_key="test-key",
        openai_base_url=f"{fakes.url}/v1",
        default_tts_provider="deepgram",
        default_tts_voice="aura-2-thalia-en",
    )
    async with Simulator.from_settings(base, service_url=None) as sim:

        def make(base_url: str) -> Settings:
            return msgspec.structs.replace(
                base,
                public_base_url=base_url,
                twilio_base_url=sim.base_url,
                simulator_base_url=sim.base_url,
                vonage_base_url=sim.base_url,
            )

        async with (
            running_service(make) as a,
            running_service(make) as b,
            httpx.AsyncClient(base_url=a.base_url, timeout=30) as api_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=30) as api_b,
        ):
            # Each instance drives its own media sessions with its own runtime.
            install(a.app.state.runtime, ENGINE, calls=a.live_calls)
            install(b.app.state.runtime, ENGINE, calls=b.live_calls)
            sim.service_url = b.base_url
            yield Pair(sim, a, b, api_a, api_b)
    for name, values in LATENCIES.items():
        print(f"\nlive control latency, {name}: {', '.join(f'{v * 1000:.0f} ms' for v in values)}")


@dataclass
class Listener:
    """A client of GET /v1/calls/{id}/listen: the frames it got."""

    ws: ClientConnection
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: dict[int, bytearray] = field(default_factory=lambda: {0: bytearray(), 1: bytearray()})
    positions: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: {0: [], 1: []})
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                if isinstance(message, bytes):
                    channel, position = struct.unpack_from("<BI", message)
                    pcm = message[5:]
                    self.audio[channel] += pcm
                    self.positions[channel].append((position, len(pcm) // 2))
                else:
                    self.events.append(msgspec.json.decode(message))
                self.changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def listening(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Listener]:
    async with connect(url, additional_headers=headers or {}, max_size=1 << 22) as ws:
        listener = Listener(ws)
        task = asyncio.create_task(listener.run())
        try:
            yield listener
        finally:
            await ws.close()
            await task


def ws_url(svc: RunningService, path: str) -> str:
    return svc.ws_url + path


async def live_call(
    pair: Pair,
    tenant: Any,
    provider: str,
    tmp_path: Path,
    *,
    starter: str = "Hi there.",
    caller: tuple[tuple[str, float], ...] = (("silence", 1.0), ("speech", 0.8), ("silence", 40.0)),
) -> tuple[str, SimCall]:
    """A call placed through instance B (so its media socket is on B) that stays up until the service ends it."""
    to, request = await place(pair.api_b, tenant, provider, starter=starter)
    wav = caller_wav(tmp_path, list(caller))
    pair.sim.scenarios[to] = Scenario(wav=wav, hangup_after=None)
    r = await pair.api_b.post(
        "/v1/calls", content=request, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    call_id = r.json()["id"]
    sim_call = await pair.sim.wait_for_call(lambda c: c.to == to)
    await until(lambda: pair.b.live_calls.get(uuid.UUID(call_id)) is not None, within=15)
    assert pair.a.live_calls.get(uuid.UUID(call_id)) is None  # the media is on B only
    return call_id, sim_call


async def timed(name: str, request: Any) -> httpx.Response:
    started = time.perf_counter()
    response = await request
    LATENCIES.setdefault(name, []).append(time.perf_counter() - started)
    return response


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_listen_say_and_transfer_through_the_other_instance(
    pair: Pair,
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    fakes.reset(script=["I'd like to book a table."], replies=["Sure. For how many people?"])
    call_id, sim_call = await live_call(pair, tenant, provider, tmp_path)
    path = f"/v1/calls/{call_id}"
    async with listening(ws_url(pair.a, f"{path}/listen"), tenant.headers) as listener:
        await listener.wait(lambda: bool(listener.of("start")))
        start = listener.of("start")[0]
        rate = 8000 if provider == "twilio" else 16000
        assert start == {
            "type": "start",
            "call_id": call_id,
            "status": "ongoing",
            "sample_rate": rate,
            "encoding": "pcm_s16le",
            "channels": ["caller", "agent"],
        }
        # The caller's words as recognised, then the agent's answer as it plays: text and audio on both channels.
        await listener.wait(lambda: any(e["final"] for e in listener.of("caller_text")))
        assert listener.of("caller_text")[-1]["text"] == "I'd like to book a table."
        await listener.wait(lambda: any(e["text"] == "For how many people?" for e in listener.of("agent_text")))
        await listener.wait(lambda: len(listener.audio[1]) > 0 and len(listener.audio[0]) > rate)
        caller = listener.positions[0]
        # The caller's stream is contiguous: each chunk starts where the one before ended.
        assert all(p + n == q for (p, n), (q, _) in zip(caller, caller[1:], strict=False))

        # Say, interrupting: the agent says it at once, on B, and it reaches the transcript.
        r = await timed("say", pair.api_a.post(f"{path}/say", json={"text": "Let me check that for you."},
                                               headers=tenant.headers))
        assert r.status_code == 202, r.text
        assert r.json() == {"call_id": call_id, "command": "say", "status": "ongoing", "end_reason": None,
                            "note": None}
        await listener.wait(lambda: any(e["text"] == "Let me check that for you." for e in listener.of("agent_text")))
        await listener.wait(
            lambda: any(e["role"] == "agent" and e["text"] == "Let me check that for you."
                        for e in listener.of("transcript"))
        )

        # Transfer: the agent says the transfer line, the carrier moves the call, the listener sees the end.
        bad = await pair.api_a.post(f"{path}/transfer", json={"to": "0123"}, headers=tenant.headers)
        assert bad.status_code in (400, 422) and "to" in bad.text
        r = await timed("transfer", pair.api_a.post(f"{path}/transfer", json={"to": TRANSFER_TO},
                                                    headers=tenant.headers))
        assert r.status_code == 202, r.text
        await listener.wait(lambda: bool(listener.of("end")), within=20)
        assert listener.of("end")[0]["end_reason"] == "transferred"
    assert sim_call.transferred_to == TRANSFER_TO
    row = await settled(admin_conn, call_id)
    agent_lines = [t["text"] for t in row["transcripts"] if t["role"] == "agent"]
    assert "Let me check that for you." in agent_lines
    assert agent_lines[-1] == "Please hold while I transfer your call."
    assert row["metadata"]["end_reason"] == "transferred"
    assert row["metadata"]["conversation"]["transferred_to"] == TRANSFER_TO
    # A command for a call that has ended: 409 with its status.
    gone = await pair.api_a.post(f"{path}/say", json={"text": "Hello?"}, headers=tenant.headers)
    assert gone.status_code == 409 and gone.json()["call_status"] == "ended"


async def _key(api: httpx.AsyncClient, tenant: Any, role: str) -> dict[str, str]:
    r = await api.post("/v1/api-keys", json={"name": role, "role": role}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def test_end_roles_tokens_and_tenants_through_the_other_instance(
    pair: Pair,
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    make_tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    fakes.reset(script=["I'd like to book a table."], replies=["Sure. For how many people?"])
    call_id, sim_call = await live_call(pair, tenant, "twilio", tmp_path)
    path = f"/v1/calls/{call_id}"
    api = pair.api_a
    viewer = await _key(api, tenant, "viewer")
    other = await make_tenant()

    # Another tenant's call does not exist for it.
    for response in (
        await api.post(f"{path}/end", headers=other.headers),
        await api.post(f"{path}/say", json={"text": "Hi"}, headers=other.headers),
        await api.post(f"{path}/listen-token", headers=other.headers),
    ):
        assert response.status_code == 404, response.text
    # No credentials: 401; a viewer may not act…
    assert (await api.post(f"{path}/end")).status_code == 401
    for response in (
        await api.post(f"{path}/end", headers=viewer),
        await api.post(f"{path}/say", json={"text": "Hi"}, headers=viewer),
        await api.post(f"{path}/transfer", json={"to": TRANSFER_TO}, headers=viewer),
    ):
        assert response.status_code == 403, response.text
    bad = await api.post(f"{path}/say", json={"text": "   ", "interupt": False}, headers=tenant.headers)
    assert bad.status_code in (400, 422) and "interupt" in bad.text
    # …but may listen, with a single-use token in the URL (what a browser does).
    token = await api.post(f"{path}/listen-token", headers=viewer)
    assert token.status_code == 201, token.text
    listen_url = token.json()["listen_url"]
    assert listen_url.startswith(f"{path}/listen?token=")
    async with listening(ws_url(pair.a, listen_url)) as listener:
        await listener.wait(lambda: bool(listener.of("start")))
        # The same token again, and no credentials at all: refused, with a reason the page can show.
        for url in (listen_url, f"{path}/listen", f"/v1/calls/{uuid.uuid4()}/listen?token=x"):
            async with listening(ws_url(pair.a, url)) as refused:
                await refused.wait(lambda r=refused: bool(r.of("error")))
            assert refused.of("error")[0]["status"] == 401 and refused.ws.close_code == 4401
        async with listening(ws_url(pair.a, f"{path}/listen"), other.headers) as stranger:
            await stranger.wait(lambda: bool(stranger.of("error")))
        assert stranger.of("error")[0]["status"] == 404 and stranger.ws.close_code == 4404

        await listener.wait(lambda: len(listener.audio[0]) > 8000)
        r = await timed("end", api.post(f"{path}/end", headers=tenant.headers))
        assert r.status_code == 202, r.text
        assert (r.json()["status"], r.json()["end_reason"], r.json()["note"]) == ("ended", "ended_by_api", None)
        await listener.wait(lambda: bool(listener.of("end")))
        assert listener.of("end")[0] == {"type": "end", "status": "ended", "end_reason": "ended_by_api"}
    assert listener.ws.close_code == 1000
    await sim_call.finished(timeout=15)
    assert sim_call.hangup_requested.is_set()
    row = await settled(admin_conn, call_id)
    assert row["status"] == "ended" and row["metadata"]["end_reason"] == "ended_by_api"
    # Ended: every command is a 409 that says the call's status; the listen socket says so too.
    again = await api.post(f"{path}/end", headers=tenant.headers)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert (again.json()["call_status"], again.json()["end_reason"]) == ("ended", "ended_by_api")
    assert (await api.post(f"{path}/listen-token", headers=tenant.headers)).status_code == 409
    async with listening(ws_url(pair.a, f"{path}/listen"), tenant.headers) as late:
        await late.wait(lambda: bool(late.of("error")))
    assert late.of("error")[0]["call_status"] == "ended" and late.ws.close_code == 4409


async def test_say_after_the_current_sentence(
    pair: Pair,
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """interrupt=false: the sentence being said plays to its end, the rest of the reply is dropped without a clear,
    then the line; the history and transcript keep what was said."""
    starter = "Hi there, this is Ava from Bistro Uno. I am calling about your booking. It is for next Friday."
    fakes.reset(script=[], replies=[], seconds_per_char=0.04)
    call_id, sim_call = await live_call(pair, tenant, "twilio", tmp_path, starter=starter,
                                        caller=(("silence", 40.0),))
    path = f"/v1/calls/{call_id}"
    session = pair.b.live_calls.get(uuid.UUID(call_id))
    assert session is not None
    await until(lambda: session.frames_out > 10, within=10)  # the first sentence is playing
    async with listening(ws_url(pair.a, f"{path}/listen"), tenant.headers) as listener:
        await listener.wait(lambda: bool(listener.of("start")))
        r = await pair.api_a.post(
            f"{path}/say", json={"text": "Sorry, one moment please.", "interrupt": False}, headers=tenant.headers
        )
        assert r.status_code == 202, r.text
        # Once the line has played and its turn is over (its transcript entry is out), hang up.
        await listener.wait(lambda: any(e["text"] == "Sorry, one moment please." for e in listener.of("transcript")))
        r = await pair.api_a.post(f"{path}/end", headers=tenant.headers)
        assert r.status_code == 202, r.text
    row = await settled(admin_conn, call_id)
    agent = [t for t in row["transcripts"] if t["role"] == "agent"]
    assert agent[0]["text"] == "Hi there, this is Ava from Bistro Uno." and agent[0]["interrupted"] is True
    assert agent[1]["text"] == "Sorry, one moment please."
    assert sim_call.media.clears == 0  # nothing was cleared: the rest never left the service
    # The carrier played the first sentence and the line, nothing of the dropped sentences.
    assert set(sim_call.media.marks_echoed) == {"t1.0", "t2.0"}


async def test_a_call_no_instance_answers_for(
    pair: Pair, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    """The instance that carried the call's media is gone (nobody LISTENs on the call's channel): commands fail
    cleanly and promptly, and end still ends the call through the carrier."""
    call_id, created_at = await insert_call(
        admin_conn, tenant.id, status="ongoing", media_ended=False, provider_final=False
    )
    await admin_conn.execute(
        "UPDATE voice_call_logs SET provider_call_id = $2 WHERE id = $1", call_id, "CA" + uuid.uuid4().hex
    )
    path = f"/v1/calls/{call_id}"
    say = await pair.api_a.post(f"{path}/say", json={"text": "Hello?"}, headers=tenant.headers)
    assert say.status_code == 503 and "may have stopped" in say.json()["detail"]
    assert say.headers["retry-after"] == "2"
    transfer = await pair.api_a.post(f"{path}/transfer", json={"to": TRANSFER_TO}, headers=tenant.headers)
    assert transfer.status_code == 503
    async with listening(ws_url(pair.a, f"{path}/listen"), tenant.headers) as listener:
        await listener.wait(lambda: bool(listener.of("error")))
    assert listener.of("error")[0]["status"] == 503 and listener.ws.close_code == 4503
    end = await pair.api_a.post(f"{path}/end", headers=tenant.headers)
    assert end.status_code == 202, end.text
    assert "hung up through the carrier" in end.json()["note"] and "no service instance" in end.json()["note"]
    assert end.json()["end_reason"] == "ended_by_api"


async def test_batch_cancel_can_hang_up_its_live_calls(
    pair: Pair,
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    fakes.reset(script=[], replies=[])
    await credit(pair.b.app.state.runtime.pool, tenant.id)
    agent = await pair.api_b.post("/v1/agents", json={"name": "Dialer", "outbound_starter_prompt": "Hello."},
                                  headers=tenant.headers)
    number = await pair.api_b.post(
        "/v1/numbers", json={"phone_number": "+12125550142", "provider": "twilio"}, headers=tenant.headers
    )
    assert number.status_code == 201, number.text
    phones = distinct_phones(2)
    wav = caller_wav(tmp_path, [("silence", 40.0)])
    for phone in phones:
        pair.sim.scenarios[phone] = Scenario(wav=wav, hangup_after=None)
    created = await pair.api_b.post(
        "/v1/batches",
        json={"agent_id": agent.json()["id"], "from_number_id": number.json()["id"],
              "entries": [{"phone": p} for p in phones]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    batch_id = created.json()["id"]
    try:
        # Instance B's dispatcher places them: their media sockets are on B.
        await run_tick(pair.b.app.state.runtime, tenant.id, uuid.UUID(batch_id))
        sims = [await pair.sim.wait_for_call(lambda c, p=p: c.to == p) for p in phones]
        await until(lambda: sum(1 for s in pair.b.live_calls.sessions() if s.call.batch_id) >= 2, within=15)

        r = await pair.api_a.post(f"/v1/batches/{batch_id}/cancel", json={"hangup_live": True},
                                  headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        for sim_call in sims:
            await sim_call.finished(timeout=15)
            assert sim_call.hangup_requested.is_set()
        rows = await admin_conn.fetch(
            "SELECT status, metadata->>'end_reason' AS reason FROM voice_call_logs WHERE batch_id = $1",
            uuid.UUID(batch_id),
        )
        assert sorted((r["status"], r["reason"]) for r in rows) == [("ended", "batch_cancelled")] * 2
        bad = await pair.api_a.post(f"/v1/batches/{batch_id}/cancel", json={"hangup_live": "yes"},
                                    headers=tenant.headers)
        assert bad.status_code in (400, 422) and "hangup_live" in bad.text
    finally:
        await drop_batch_jobs(admin_conn, tenant.id)


async def test_commands_still_route_after_the_bus_loses_its_connection(
    pair: Pair,
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """A database restart or a dropped connection costs the bus its LISTENs: it reconnects and LISTENs again, on
    its inbox and on the channels of the calls it carries."""
    fakes.reset(script=["I'd like to book a table."], replies=["Sure. For how many people?"])
    call_id, _ = await live_call(pair, tenant, "twilio", tmp_path)
    buses = [pair.a.app.state.live_control.bus, pair.b.app.state.live_control.bus]
    before = [bus.connections for bus in buses]
    killed = await admin_conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN \"vs_live_%'"
    )
    assert len(killed) >= 2
    # Each bus connects anew (it may do so before a poll could see it disconnected).
    await until(lambda: all(bus.connections > n for bus, n in zip(buses, before, strict=True)), within=10)
    await until(lambda: all(bus.connected for bus in buses), within=10)
    path = f"/v1/calls/{call_id}"
    async with listening(ws_url(pair.a, f"{path}/listen"), tenant.headers) as listener:
        await listener.wait(lambda: bool(listener.of("start")))
        r = await pair.api_a.post(f"{path}/say", json={"text": "Still here."}, headers=tenant.headers)
        assert r.status_code == 202, r.text
        await listener.wait(
            lambda: any(e["role"] == "agent" and e["text"] == "Still here." for e in listener.of("transcript"))
        )
        r = await pair.api_a.post(f"{path}/end", headers=tenant.headers)
        assert r.status_code == 202 and r.json()["status"] == "ended", r.text
        await listener.wait(lambda: bool(listener.of("end")))
    row = await settled(admin_conn, call_id)
    assert "Still here." in [t["text"] for t in row["transcripts"] if t["role"] == "agent"]


async def test_end_before_the_call_is_answered(pair: Pair, tenant: Any, admin_conn: asyncpg.Connection) -> None:
    """No media yet: end still ends the call (cancelled if it was never placed, hung up at the carrier if it rings);
    the other commands say the call has not been answered."""
    unplaced, _ = await insert_call(
        admin_conn, tenant.id, status="pending", media_ended=False, provider_final=False, started=False
    )
    ringing, _ = await insert_call(
        admin_conn, tenant.id, status="ringing", media_ended=False, provider_final=False, started=False
    )
    await admin_conn.execute(
        "UPDATE voice_call_logs SET provider_call_id = $2 WHERE id = $1", ringing, "CA" + uuid.uuid4().hex
    )
    say = await pair.api_a.post(f"/v1/calls/{ringing}/say", json={"text": "Hi"}, headers=tenant.headers)
    assert say.status_code == 409 and say.json()["call_status"] == "ringing"
    assert "not been answered" in say.json()["detail"]

    r = await pair.api_a.post(f"/v1/calls/{unplaced}/end", headers=tenant.headers)
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["end_reason"]) == ("cancelled", "ended_by_api")
    assert "not placed" in r.json()["note"]
    r = await pair.api_a.post(f"/v1/calls/{ringing}/end", headers=tenant.headers)
    assert r.status_code == 202, r.text
    assert r.json()["end_reason"] == "ended_by_api" and r.json()["note"] == "hung up through the carrier"
