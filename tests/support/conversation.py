"""Whole-call conversation tests' helpers: the fake Deepgram, OpenAI and TTS servers behind one local server, the
settings that point the service at them, and placing a call through the API and the simulator, then reading what
the call left in voice_call_logs. The fixtures built on these are in tests/integration/conversation/conftest.py."""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault
from tests.fakes.tts import FakeTts
from voice_service.conversation.services import EngineConfig
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.audio import speech_like

VONAGE_SECRET = "vonage-signature-secret-for-the-conversation-tests"
VONAGE_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)
ENGINE = EngineConfig(
    llm_first_token_timeout=1.0,
    llm_stall_timeout=1.0,
    tts_first_byte_timeout=1.0,
    tts_stall_timeout=1.0,
    playback_grace_seconds=0.5,
)


class Fakes:
    """The three fake providers (served together by the `fakes` fixture at `url`) and their per-test script."""

    def __init__(self) -> None:
        self.deepgram = FakeDeepgram()
        self.openai = FakeOpenAI()
        self.tts = FakeTts(seconds_per_char=0.01, chunk_ms=40)
        self.url = ""

    def reset(
        self,
        *,
        script: Sequence[str] = (),
        replies: Sequence[Any] = (),
        tts_faults: Sequence[Fault] = (),
        seconds_per_char: float = 0.01,
        **deepgram: Any,
    ) -> None:
        dg = self.deepgram
        dg.script, dg.utterances, dg.drops, dg.sessions = list(script), 0, 0, []
        dg.drop_after_audio_s, dg.drop_once = (
            deepgram.get("drop_after_audio_s"),
            deepgram.get("drop_once", True),
        )
        self.openai.replies = deque(replies)
        self.openai.requests.clear()
        self.tts.faults = deque(tts_faults)
        self.tts.seconds_per_char = seconds_per_char
        self.tts.requests.clear()


def conversation_overrides(fakes_url: str) -> dict[str, Any]:
    """Settings pointing the service's Deepgram, OpenAI and TTS clients at the local fakes."""
    return {
        "vonage_private_key": VONAGE_PEM,
        "vonage_signature_secret": VONAGE_SECRET,
        "drain_timeout_seconds": 2.0,
        "deepgram_api_key": "test-key",
        "deepgram_base_url": fakes_url.replace("http://", "ws://"),
        "deepgram_http_url": fakes_url,
        "openai_api_key": "test-key",
        "openai_base_url": f"{fakes_url}/v1",
        "default_tts_provider": "deepgram",
        "default_tts_voice": "aura-2-thalia-en",
    }


def caller_wav(tmp_path: Path, segments: Sequence[tuple[str, float]], rate: int = 16000) -> str:
    """A WAV of speech-like audio and silence, in order (each speech segment short enough to be one utterance)."""
    parts = [
        speech_like(s, rate, seed=i) if kind == "speech" else bytes(int(s * rate) * 2)
        for i, (kind, s) in enumerate(segments)
    ]
    path = tmp_path / f"caller-{uuid.uuid4().hex[:8]}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(parts))
    return str(path)


def _phone() -> str:
    return f"+4420795{uuid.uuid4().int % 100000:05d}"


async def place(
    api: httpx.AsyncClient,
    tenant: Any,
    provider: str,
    *,
    starter: str | None = "Hi there.",
    instructions: str = "You book tables.",
    config: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    lead: dict[str, Any] | None = None,
) -> tuple[str, str]:
    h = tenant.headers
    body: dict[str, Any] = {
        "name": "Ava",
        "agent_instructions": instructions,
        "outbound_starter_prompt": starter,
        "config": config or {},
    }
    r = await api.post("/v1/agents", json=body, headers=h)
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    r = await api.post(
        "/v1/numbers",
        json={"phone_number": _phone(), "provider": provider, "default_agent_id": agent_id},
        headers=h,
    )
    assert r.status_code == 201, r.text
    to = _phone()
    request: dict[str, Any] = {
        "agent_id": agent_id,
        "from_number_id": r.json()["id"],
        "to": to,
        "variables": variables or {},
    }
    if lead is not None:
        r = await api.post("/v1/leads", json={"phone": to, **lead}, headers=h)
        assert r.status_code == 201, r.text
        request["lead_id"] = r.json()["id"]
    return to, msgspec.json.encode(request).decode()


async def call(
    api: httpx.AsyncClient, tenant: Any, sim: Simulator, to: str, request: str, scenario: Scenario
) -> tuple[str, Any]:
    sim.scenarios[to] = scenario
    r = await api.post(
        "/v1/calls", content=request, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    sim_call = await (await sim.wait_for_call(lambda c: c.to == to)).finished(timeout=40)
    return r.json()["id"], sim_call


async def settled(admin_conn: asyncpg.Connection, call_id: str, within: float = 15.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        row = await admin_conn.fetchrow("SELECT * FROM voice_call_logs WHERE id = $1", uuid.UUID(call_id))
        assert row is not None
        if row["provider_final_at"] is not None and row["media_ended_at"] is not None:
            data = dict(row)
            for key in ("metadata", "transcripts"):
                if isinstance(data[key], str):
                    data[key] = msgspec.json.decode(data[key])
            return data
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"call did not settle: {dict(row)}")
        await asyncio.sleep(0.05)


def said(row: dict[str, Any], role: str = "agent") -> list[str]:
    return [t["text"] for t in row["transcripts"] if t["role"] == role]
