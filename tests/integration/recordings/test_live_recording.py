"""Recordings of real calls, end to end: POST /v1/calls → the simulator answers (Twilio's and Vonage's wire formats)
and streams the caller over the real media WebSocket → the conversation engine (fake Deepgram, OpenAI and TTS
servers) talks, is barged in on, and the media path records both channels as it goes → the encode job on a real
worker → GET /v1/calls/{id}/recording, decoded the way a player decodes it. Stored in a folder and in an
S3-compatible server (moto on 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.conversation import (
    ENGINE,
    VONAGE_PEM,
    VONAGE_SECRET,
    Fakes,
    call,
    caller_wav,
    place,
    settled,
)
from tests.support.pipeline import wait_for, worker
from tests.support.recordings import S3Server, decode, moto_server, s3_client
from voice_service.conversation import install
from voice_service.recordings import service as recordings
from voice_service.recordings.storage import ObjectNotFound, get_storage
from voice_service.settings import Settings
from voice_service.simulator import Scenario, Simulator
from voice_service.simulator.harness import RunningService, simulated_stack

BUCKET = "live-recordings"
NOTICE = "This call is recorded."
STARTER = "Hi there. I am calling about the booking you made for the spring menu next week at our place."


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


def _overrides(fakes: Fakes) -> dict[str, Any]:  # noqa: F811 - the fixture's value
    return {
        "vonage_private_key": VONAGE_PEM,
        "vonage_signature_secret": VONAGE_SECRET,
        "drain_timeout_seconds": 2.0,
        "deepgram_api_key": "test-key",
        "deepgram_base_url": fakes.url.replace("http://", "ws://"),
        "deepgram_http_url": fakes.url,
        "openai_api_key": "test-key",
        "openai_base_url": f"{fakes.url}/v1",
        "default_tts_provider": "deepgram",
        "default_tts_voice": "aura-2-thalia-en",
    }


@pytest.fixture(scope="module")
async def folder_stack(
    settings: Settings, fakes: Fakes  # noqa: F811 - the fixture imported above
) -> AsyncIterator[tuple[Simulator, RunningService]]:
    async with simulated_stack(settings, **_overrides(fakes)) as (sim, svc):
        install(svc.app.state.runtime, ENGINE, calls=svc.live_calls)
        yield sim, svc


@pytest.fixture(scope="module")
async def s3_stack(
    settings: Settings, fakes: Fakes, s3_server: S3Server  # noqa: F811 - the fixture imported above
) -> AsyncIterator[tuple[Simulator, RunningService]]:
    async with s3_client(s3_server) as client:
        await client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    async with simulated_stack(
        settings,
        **_overrides(fakes),
        recordings_url=f"s3://{BUCKET}/calls-e2e",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
        s3_region=s3_server.region,
    ) as (sim, svc):
        install(svc.app.state.runtime, ENGINE, calls=svc.live_calls)
        yield sim, svc


@pytest.fixture(params=["folder", "s3"])
def stack(request: pytest.FixtureRequest) -> tuple[Simulator, RunningService]:
    return request.getfixturevalue(f"{request.param}_stack")  # type: ignore[no-any-return]


async def _recording(svc: RunningService, api: httpx.AsyncClient, tenant: Any, call_id: str) -> dict[str, Any]:
    """Run the encode job on a real worker until the call has its recording; the call as the API shows it."""
    async with worker(svc.app.state.runtime, [recordings.ENCODE_JOB]):

        async def stored() -> bool:
            got = (await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
            return got["recording_url"] is not None or "recording_error" in got["metadata"]

        await wait_for(stored, within=30)
    return (await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_a_call_is_recorded_as_two_aligned_channels(
    stack: tuple[Simulator, RunningService],
    fakes: Fakes,  # noqa: F811 - the fixture imported above
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
    provider: str,
) -> None:
    sim, svc = stack
    # The notice and the starter play; a backchannel at 1.0 s is let by; the caller cuts in at 2.5 s; the agent
    # answers; the caller hangs up 2.5 s after speaking.
    fakes.reset(
        script=["Yeah.", "Sorry, I need to change the date."], replies=["No problem. Which date?"], seconds_per_char=0.06
    )
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=30) as api:
        to, request = await place(
            api, tenant, provider, starter=STARTER, config={"interrupt_min_words": 2, "recording_notice": NOTICE}
        )
        wav = caller_wav(
            tmp_path, [("silence", 1.0), ("speech", 0.3), ("silence", 1.2), ("speech", 1.0), ("silence", 2.5)]
        )
        call_id, sim_call = await call(api, tenant, sim, to, request, Scenario(wav=wav, hangup_after=0.0))
        row = await settled(admin_conn, call_id)
        got = await _recording(svc, api, tenant, call_id)

        assert "recording_error" not in got["metadata"], got["metadata"]
        url = f"/v1/calls/{call_id}/recording"
        assert got["recording_url"] == url
        response = await api.get(url, headers=tenant.headers)
        assert response.status_code == 200 and response.headers["content-type"].startswith("audio/mpeg")
        assert (await api.get(url)).status_code == 401

    transcript = row["transcripts"]
    agent = [t for t in transcript if t["role"] == "agent"]
    caller = [t for t in transcript if t["role"] == "caller"]
    # The notice was said first, before the starter, and is in the transcript; the barge-in cut that utterance.
    assert agent[0]["text"].startswith(f"{NOTICE} Hi there.") and agent[0]["interrupted"] is True
    assert agent[1]["text"] == "No problem. Which date?"
    assert sim_call.media.clears == 1

    audio = decode(response.content)
    assert audio.channels == 2
    # The call's length as the carrier measured it (answer to hang-up; the call log's own times are whole seconds).
    assert sim_call.answered_at is not None and sim_call.ended_at is not None
    call_seconds = sim_call.ended_at - sim_call.answered_at
    assert abs(audio.duration - call_seconds) < 1.0, (audio.duration, call_seconds)
    assert abs(audio.duration - row["duration_seconds"]) <= 1.5
    assert abs(audio.duration - got["metadata"]["recording"]["duration_ms"] / 1000) < 0.1
    # Caller on the left: sound where the caller spoke, and the caller's silence before it.
    barge = caller[-1]
    assert audio.rms(0, barge["start_ms"] / 1000 + 0.1, barge["end_ms"] / 1000 - 0.1) > 0.02
    assert audio.rms(0, 0.1, 0.9) < 0.002
    # The agent on the right, as the caller heard it: from the first agent audio, cut at the barge-in clear, silent
    # until the reply, which plays.
    cut, reply = agent[0]["end_ms"] / 1000, agent[1]["start_ms"] / 1000
    assert audio.onset(1) == pytest.approx(agent[0]["start_ms"] / 1000, abs=0.15)
    assert audio.rms(1, agent[0]["start_ms"] / 1000 + 0.1, cut - 0.1) > 0.05
    assert audio.last_sound(1, before=reply - 0.05) == pytest.approx(cut, abs=0.15)
    assert audio.rms(1, cut + 0.15, reply - 0.05) < 0.001
    assert audio.rms(1, reply + 0.1, agent[1]["end_ms"] / 1000 - 0.1) > 0.05
    assert len(response.content) / (audio.duration / 60) <= 500_000


async def test_recording_off_leaves_no_file_and_no_url(
    folder_stack: tuple[Simulator, RunningService],
    fakes: Fakes,  # noqa: F811
    tenant: Any,
    admin_conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    sim, svc = folder_stack
    fakes.reset(script=[], replies=[])
    async with httpx.AsyncClient(base_url=svc.base_url, timeout=30) as api:
        to, request = await place(
            api, tenant, "twilio", config={"recording_enabled": False, "recording_notice": NOTICE}
        )
        call_id, _ = await call(
            api, tenant, sim, to, request, Scenario(wav=caller_wav(tmp_path, [("silence", 2.0)]), hangup_after=0.0)
        )
        row = await settled(admin_conn, call_id)
        got = (await api.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
        assert got["recording_url"] is None and "recording" not in got["metadata"]
        assert "recording_error" not in got["metadata"]
        assert (await api.get(f"/v1/calls/{call_id}/recording", headers=tenant.headers)).status_code == 404
    # Nothing is announced when nothing is recorded, nothing was spooled or uploaded, and no job waits.
    assert [t["text"] for t in row["transcripts"] if t["role"] == "agent"] == ["Hi there."]
    storage = await get_storage(svc.app.state.runtime)
    cid = uuid.UUID(call_id)
    for key in (recordings.spool_key(tenant.id, cid), recordings.audio_key(tenant.id, cid)):
        with pytest.raises(ObjectNotFound):
            await storage.size(key)
    assert not list(recordings.spool_dir(svc.settings).glob(f"*{call_id}*"))
    jobs = await admin_conn.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1 AND dedupe_key = $2",
        recordings.ENCODE_JOB,
        f"recording:{call_id}",
    )
    assert jobs == 0

