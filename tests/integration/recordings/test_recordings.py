"""Call recordings end to end, without the live engine: a capture fed as the media session feeds it (synthetic
caller and agent audio in Twilio's and Vonage's wire formats, a barge-in clear mid-utterance), the hand-off at
the call's end, the encode job run by a real pgqueuer worker against a real call row, then the API a user
plays it through — with the folder storage and with an S3-compatible server (moto, on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.pipeline import insert_agent, insert_call, wait_for, worker
from tests.support.recordings import (
    CLEAR_AFTER,
    REPLY_AT,
    SECOND_AT,
    S3Server,
    decode,
    feed_synthetic_call,
    moto_server,
    s3_client,
)
from tests.support.tenants import Tenant
from voice_service.app import create_app
from voice_service.calls.schemas import CallInfo
from voice_service.composition import open_runtime
from voice_service.recordings import purge, service
from voice_service.recordings.service import RecordingPolicy, encode_and_store, finish_capture, open_capture
from voice_service.recordings.storage import FolderStorage, ObjectNotFound, get_storage
from voice_service.runtime import Runtime
from voice_service.settings import Settings

BUCKET = "recordings-e2e"
CALL_SECONDS = 12
CARRIERS = {"twilio": ("mulaw", 8000), "vonage": ("l16", 16000)}
_decoder = msgspec.json.Decoder()


@dataclass
class Env:
    name: str
    client: AsyncTestClient[Litestar]
    runtime: Runtime


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
async def s3_env(settings: Settings, s3_server: S3Server) -> AsyncIterator[Env]:
    """A second app on the same database whose recordings go to the S3-compatible server, and a runtime (a
    worker's view) with the same settings."""
    async with s3_client(s3_server) as client:
        await client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    s3_settings = msgspec.structs.replace(
        settings,
        recordings_url=f"s3://{BUCKET}/e2e",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
        s3_region=s3_server.region,
    )
    app = create_app(s3_settings, bootstrap=False)
    async with (
        AsyncTestClient(app=app, base_url="http://testserver.local") as client,
        open_runtime(s3_settings, apply_migrations=False) as runtime,
    ):
        yield Env("s3", client, runtime)


@pytest.fixture
def folder_env(client: AsyncTestClient[Litestar], runtime: Runtime) -> Env:
    # The test client serves the app on its own event loop: the test's side (capture, jobs) uses `runtime`, a
    # second instance on the same database and DATA_DIR.
    return Env("folder", client, runtime)


@pytest.fixture(params=["folder", "s3"])
def env(request: pytest.FixtureRequest) -> Env:
    return request.getfixturevalue(f"{request.param}_env")  # type: ignore[no-any-return]


# --- helpers ---


async def _call_row(
    admin: asyncpg.Connection,
    tenant: Tenant,
    provider: str,
    *,
    agent_config: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> tuple[CallInfo, int]:
    agent_id = await insert_agent(admin, tenant.id)
    if agent_config is not None:
        await admin.execute(
            "UPDATE voice_agents SET config = config || $2::jsonb WHERE id = $1",
            agent_id,
            msgspec.json.encode(agent_config).decode(),
        )
    transcript = [
        {"role": "agent", "text": "Hi, this is Sam from Acme, do you", "start_ms": int(REPLY_AT * 1000),
         "end_ms": int((REPLY_AT + CLEAR_AFTER) * 1000), "interrupted": True},
        {"role": "agent", "text": "Sure, go ahead.", "start_ms": int(SECOND_AT * 1000), "end_ms": 8000,
         "interrupted": False},
    ]
    call_id, created = await insert_call(
        admin, tenant.id, provider=provider, agent_id=agent_id, transcripts=transcript, created_at=created_at
    )
    await admin.execute(
        "UPDATE voice_call_logs SET duration_seconds = $2::int, ended_at = started_at + make_interval(secs => $2::int) "
        "WHERE id = $1",
        call_id,
        CALL_SECONDS,
    )
    info = CallInfo(
        tenant_id=tenant.id, call_id=call_id, call_created_at=created, agent_id=agent_id, lead_id=None,
        direction="outbound", variables={}, voice_id=None, provider=provider, provider_call_id=None,
        from_e164=None, to_e164="+14155550100",
    )
    return info, agent_id


async def _record(runtime: Runtime, info: CallInfo, provider: str) -> float:
    """Capture a synthetic call for `info` and hand it over (the media path's part). Returns the clear's offset."""
    encoding, rate = CARRIERS[provider]
    t0 = asyncio.get_running_loop().time()
    capture = await open_capture(runtime, info, encoding=encoding, sample_rate=rate, t0=t0)
    assert capture is not None
    clear = await feed_synthetic_call(capture, encoding, rate, t0, CALL_SECONDS)
    assert await finish_capture(runtime, info.ref, capture, ended_at=t0 + CALL_SECONDS)
    return clear


async def _encoded(runtime: Runtime, client: AsyncTestClient[Litestar], tenant: Tenant, call_id: uuid.UUID) -> dict:
    """Run the encode job on a real worker until the call has its recording; returns the call as the API shows it."""
    async with worker(runtime, [service.ENCODE_JOB]):

        async def stored() -> bool:
            call = (await client.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()
            return call["recording_url"] is not None

        await wait_for(stored, within=30)
    return (await client.get(f"/v1/calls/{call_id}", headers=tenant.headers)).json()  # type: ignore[no-any-return]


async def _events(client: AsyncTestClient[Litestar], tenant: Tenant, kind: str, call_id: uuid.UUID) -> list[dict]:
    items = (await client.get("/v1/events?limit=100", headers=tenant.headers)).json()["items"]
    return [e for e in items if e["type"] == kind and e["data"].get("call_id") == str(call_id)]


async def _stored_keys(runtime: Runtime, tenant: Tenant, call_id: uuid.UUID) -> dict[str, bool]:
    storage = await get_storage(runtime)
    found = {}
    for name, key in (("audio", service.audio_key(tenant.id, call_id)), ("spool", service.spool_key(tenant.id, call_id))):
        try:
            await storage.size(key)
            found[name] = True
        except ObjectNotFound:
            found[name] = False
    return found


# --- the tests ---


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
async def test_a_recorded_call_plays_back_as_two_aligned_channels(
    env: Env, admin_conn: asyncpg.Connection, make_tenant: Any, provider: str
) -> None:
    tenant: Tenant = await make_tenant()
    info, _ = await _call_row(admin_conn, tenant, provider)
    clear = await _record(env.runtime, info, provider)
    call = await _encoded(env.runtime, env.client, tenant, info.call_id)

    url = f"/v1/calls/{info.call_id}/recording"
    assert call["recording_url"] == url
    assert "recording_error" not in call["metadata"]
    meta = call["metadata"]["recording"]
    assert meta["channels"] == ["caller", "agent"] and meta["content_type"] == "audio/mpeg"

    response = await env.client.get(url, headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("audio/mpeg")
    assert response.headers["accept-ranges"] == "bytes"
    body = response.content
    assert int(response.headers["content-length"]) == len(body) == meta["bytes"]
    assert len(body) / (CALL_SECONDS / 60) <= 500_000  # at most about 500 KB per minute of call

    audio = decode(body)
    assert audio.channels == 2
    assert abs(audio.duration - call["duration_seconds"]) < 1.0
    # Caller on the left throughout; the agent on the right where the transcript says it spoke.
    agent_turns = [t for t in (await _transcript(admin_conn, info.call_id)) if t["role"] == "agent"]
    assert audio.rms(0, 0.5, CALL_SECONDS - 0.5) > 0.1
    assert audio.onset(1) == pytest.approx(agent_turns[0]["start_ms"] / 1000, abs=0.03)
    # Cut at the barge-in clear, silent until the next reply, silent after it.
    assert audio.last_sound(1, before=SECOND_AT - 0.5) == pytest.approx(clear, abs=0.03)
    assert audio.rms(1, clear + 0.05, SECOND_AT - 0.05) < 0.001
    assert audio.rms(1, SECOND_AT + 0.05, SECOND_AT + 1.95) > 0.1
    assert audio.rms(1, SECOND_AT + 2.05, CALL_SECONDS - 0.1) < 0.001

    # Seeking: byte ranges.
    part = await env.client.get(url, headers={**tenant.headers, "Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(body)}"
    assert part.content == body[100:1100] and part.headers["content-length"] == "1000"
    tail = await env.client.get(url, headers={**tenant.headers, "Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == body[-500:]
    rest = await env.client.get(url, headers={**tenant.headers, "Range": f"bytes={len(body) - 10}-"})
    assert rest.status_code == 206 and rest.content == body[-10:]
    beyond = await env.client.get(url, headers={**tenant.headers, "Range": f"bytes={len(body)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(body)}"
    assert beyond.headers["content-type"].startswith("application/problem+json")
    stale = await env.client.get(url, headers={**tenant.headers, "Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == body  # the file changed since: the whole of it

    ready = await _events(env.client, tenant, "voice_call.recording_ready", info.call_id)
    assert len(ready) == 1 and ready[0]["data"]["recording_url"] == url and ready[0]["data"]["bytes"] == len(body)
    # The raw spool is gone from the storage once the recording is stored.
    assert await _stored_keys(env.runtime, tenant, info.call_id) == {"audio": True, "spool": False}

    # Running the job again (a duplicate, a retry) changes nothing and announces nothing twice.
    assert await encode_and_store(env.runtime, tenant.id, info.call_id) == "already_stored"
    assert len(await _events(env.client, tenant, "voice_call.recording_ready", info.call_id)) == 1


async def _transcript(admin: asyncpg.Connection, call_id: uuid.UUID) -> list[dict]:
    raw = await admin.fetchval("SELECT transcripts FROM voice_call_logs WHERE id = $1", call_id)
    return raw if isinstance(raw, list) else _decoder.decode(raw)


async def test_recordings_need_credentials_and_stay_in_their_tenant(
    folder_env: Env, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    owner: Tenant = await make_tenant()
    other: Tenant = await make_tenant()
    info, _ = await _call_row(admin_conn, owner, "twilio")
    await _record(folder_env.runtime, info, "twilio")
    await _encoded(folder_env.runtime, folder_env.client, owner, info.call_id)
    url = f"/v1/calls/{info.call_id}/recording"
    client = folder_env.client

    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers={"Authorization": "Bearer vsk_not-a-key"})).status_code == 401
    assert (await client.delete(url)).status_code == 401
    for response in (await client.get(url, headers=other.headers), await client.delete(url, headers=other.headers)):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    # A call without a recording, and no call at all.
    bare, _ = await _call_row(admin_conn, owner, "twilio")
    missing = await client.get(f"/v1/calls/{bare.call_id}/recording", headers=owner.headers)
    assert missing.status_code == 404 and "has no recording" in missing.json()["detail"]
    assert (await client.get(f"/v1/calls/{uuid.uuid4()}/recording", headers=owner.headers)).status_code == 404
    # Still there for its tenant.
    assert (await client.get(url, headers=owner.headers)).status_code == 200


async def test_delete_removes_the_file_and_the_url_and_is_audited(
    env: Env, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    tenant: Tenant = await make_tenant()
    info, _ = await _call_row(admin_conn, tenant, "vonage")
    await _record(env.runtime, info, "vonage")
    await _encoded(env.runtime, env.client, tenant, info.call_id)
    url = f"/v1/calls/{info.call_id}/recording"
    member = (
        await env.client.post("/v1/api-keys", json={"name": "m", "role": "member"}, headers=tenant.headers)
    ).json()
    member_headers = {"Authorization": f"Bearer {member['key']}"}
    assert (await env.client.get(url, headers=member_headers)).status_code == 200  # members listen
    assert (await env.client.delete(url, headers=member_headers)).status_code == 403  # admins delete

    response = await env.client.delete(url, headers=tenant.headers)
    assert response.status_code == 204
    assert await _stored_keys(env.runtime, tenant, info.call_id) == {"audio": False, "spool": False}
    call = (await env.client.get(f"/v1/calls/{info.call_id}", headers=tenant.headers)).json()
    assert call["recording_url"] is None
    assert "recording" not in call["metadata"]
    assert call["metadata"]["recording_deleted"]["reason"] == "api"
    assert (await env.client.get(url, headers=tenant.headers)).status_code == 404
    assert (await env.client.delete(url, headers=tenant.headers)).status_code == 404
    deleted = await _events(env.client, tenant, "voice_call.recording_deleted", info.call_id)
    assert len(deleted) == 1
    assert deleted[0]["data"]["reason"] == "api"
    assert deleted[0]["data"]["deleted_by"]["kind"] == "api_key"
    assert deleted[0]["data"]["deleted_by"]["api_key_id"]
    # A late encode retry does not bring it back.
    assert await encode_and_store(env.runtime, tenant.id, info.call_id, attempt=2) == "deleted"
    assert await _stored_keys(env.runtime, tenant, info.call_id) == {"audio": False, "spool": False}


async def test_recording_off_means_no_file_and_no_url(
    folder_env: Env, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    tenant: Tenant = await make_tenant()
    client = folder_env.client
    created = await client.post(
        "/v1/agents",
        json={"name": "Quiet", "config": {"recording_enabled": False, "recording_notice": "Not recorded."}},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"]["recording_enabled"] is False
    agent_config = created.json()["config"]
    info, _ = await _call_row(admin_conn, tenant, "twilio", agent_config={"recording_enabled": False})
    spools_before = set(service.spool_dir(folder_env.runtime.settings).glob("*"))
    capture = await open_capture(
        folder_env.runtime, info, encoding="mulaw", sample_rate=8000, t0=asyncio.get_running_loop().time()
    )
    assert capture is None
    assert set(service.spool_dir(folder_env.runtime.settings).glob("*")) == spools_before
    assert service.recording_notice(agent_config) is None  # nothing to announce when nothing is recorded
    call = (await client.get(f"/v1/calls/{info.call_id}", headers=tenant.headers)).json()
    assert call["recording_url"] is None
    assert (await client.get(f"/v1/calls/{info.call_id}/recording", headers=tenant.headers)).status_code == 404
    assert await _stored_keys(folder_env.runtime, tenant, info.call_id) == {"audio": False, "spool": False}

    # The default is on, with the notice the agent carries.
    default = await client.post(
        "/v1/agents", json={"name": "Loud", "config": {"recording_notice": "This call is recorded."}},
        headers=tenant.headers,
    )
    assert default.json()["config"]["recording_enabled"] is True
    assert service.recording_notice(default.json()["config"]) == "This call is recorded."


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"recording_enabled": "sometimes"}, "recording_enabled"),
        ({"recording_notice": "x" * 301}, "recording_notice"),
        ({"recording_notice": 5}, "recording_notice"),
    ],
)
async def test_agent_recording_settings_are_validated(
    client: AsyncTestClient[Litestar], tenant: Tenant, config: dict, field: str
) -> None:
    response = await client.post("/v1/agents", json={"name": "Bad", "config": config}, headers=tenant.headers)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_a_failed_upload_or_encode_is_noted_and_retried(
    folder_env: Env, admin_conn: asyncpg.Connection, make_tenant: Any, tmp_path: Path
) -> None:
    runtime, client = folder_env.runtime, folder_env.client
    tenant: Tenant = await make_tenant()
    good = await get_storage(runtime)
    broken_root = tmp_path / "not-a-folder"
    broken_root.write_bytes(b"")  # a file where the store's folder should be: every write and read fails
    runtime.recording_policy = RecordingPolicy(upload_backoff_seconds=0.01)
    try:
        # 1. The store is down when the call ends: the call says why, the spool waits on this instance's disk.
        runtime.recording_storage = FolderStorage(broken_root)
        info, _ = await _call_row(admin_conn, tenant, "twilio")
        await _record_expecting_no_job(runtime, info)
        call = (await client.get(f"/v1/calls/{info.call_id}", headers=tenant.headers)).json()
        assert "could not be uploaded" in call["metadata"]["recording_error"]
        assert call["recording_url"] is None
        # The store is back: recovery hands the spool over and the job stores the recording.
        runtime.recording_storage = good
        assert await service.recover_spools(runtime, idle_seconds=0) >= 1
        call = await _encoded(runtime, client, tenant, info.call_id)
        assert "recording_error" not in call["metadata"]

        # 2. The store fails while the job runs: noted, and a retry is queued for later.
        second, _ = await _call_row(admin_conn, tenant, "vonage")
        await _record(runtime, second, "vonage")
        runtime.recording_storage = FolderStorage(broken_root)
        assert await encode_and_store(runtime, tenant.id, second.call_id) == "retrying"
        call = (await client.get(f"/v1/calls/{second.call_id}", headers=tenant.headers)).json()
        assert "retrying" in call["metadata"]["recording_error"] and call["recording_url"] is None
        retry = await admin_conn.fetchrow(
            "SELECT payload, execute_after FROM pgqueuer WHERE entrypoint = $1 AND dedupe_key = $2 AND status = 'queued'",
            service.ENCODE_JOB,
            f"recording:{second.call_id}:2",
        )
        assert retry is not None and _decoder.decode(retry["payload"])["attempt"] == 2
        assert retry["execute_after"] > datetime.now(UTC) + timedelta(seconds=30)
        runtime.recording_storage = good
        assert await encode_and_store(runtime, tenant.id, second.call_id, attempt=2) == "stored"
        call = (await client.get(f"/v1/calls/{second.call_id}", headers=tenant.headers)).json()
        assert call["recording_url"] == f"/v1/calls/{second.call_id}/recording"
        assert "recording_error" not in call["metadata"]

        # 3. Audio that cannot be found is a final answer, not an endless retry.
        third, _ = await _call_row(admin_conn, tenant, "twilio")
        assert await encode_and_store(runtime, tenant.id, third.call_id) == "failed"
        call = (await client.get(f"/v1/calls/{third.call_id}", headers=tenant.headers)).json()
        assert "not in the recordings storage" in call["metadata"]["recording_error"]
    finally:
        runtime.recording_storage = good
        runtime.recording_policy = None
        await admin_conn.execute(
            "DELETE FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued'", service.ENCODE_JOB
        )


async def _record_expecting_no_job(runtime: Runtime, info: CallInfo) -> None:
    t0 = asyncio.get_running_loop().time()
    capture = await open_capture(runtime, info, encoding="mulaw", sample_rate=8000, t0=t0)
    assert capture is not None
    await feed_synthetic_call(capture, "mulaw", 8000, t0, CALL_SECONDS)
    assert not await finish_capture(runtime, info.ref, capture, ended_at=t0 + CALL_SECONDS)
    assert capture.path.exists()  # kept for recover_spools


async def test_retention_deletes_old_recordings_and_keeps_the_rest(
    folder_env: Env, admin_conn: asyncpg.Connection, make_tenant: Any
) -> None:
    runtime, client = folder_env.runtime, folder_env.client
    tenant: Tenant = await make_tenant()
    keeper: Tenant = await make_tenant()  # sets no retention: keeps everything
    assert (await client.get("/v1/recordings/settings", headers=tenant.headers)).json()["retention_days"] is None

    for body in ({"retention_days": 0}, {"retention_days": -5}, {"retention_days": "a month"}, {"retention": 30}):
        bad = await client.put("/v1/recordings/settings", json=body, headers=tenant.headers)
        assert bad.status_code == 400, bad.text
        assert "retention" in bad.text
    ok = await client.put("/v1/recordings/settings", json={"retention_days": 30}, headers=tenant.headers)
    assert ok.status_code == 200 and ok.json()["retention_days"] == 30
    assert (await client.get("/v1/recordings/settings", headers=tenant.headers)).json()["retention_days"] == 30
    queued = await admin_conn.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued'", purge.PURGE_JOB
    )
    assert queued >= 1  # setting a retention period starts the hourly purge

    old_at = datetime.now(UTC) - timedelta(days=40)
    recorded = {}
    for name, owner, created in (("old", tenant, old_at), ("new", tenant, None), ("kept", keeper, old_at)):
        info, _ = await _call_row(admin_conn, owner, "twilio", created_at=created)
        await _record(runtime, info, "twilio")
        await _encoded(runtime, client, owner, info.call_id)
        recorded[name] = (owner, info.call_id)

    purged = await purge.run_purge(runtime)
    assert purged >= 1
    for name, expect_url in (("old", False), ("new", True), ("kept", True)):
        owner, call_id = recorded[name]
        call = (await client.get(f"/v1/calls/{call_id}", headers=owner.headers)).json()
        assert (call["recording_url"] is not None) is expect_url, name
        assert (await _stored_keys(runtime, owner, call_id))["audio"] is expect_url, name
    owner, old_id = recorded["old"]
    deleted = await _events(client, owner, "voice_call.recording_deleted", old_id)
    assert len(deleted) == 1 and deleted[0]["data"]["reason"] == "retention"
    assert deleted[0]["data"]["retention_days"] == 30
    # The next run is already queued for the coming hour.
    next_hour = (datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).isoformat()
    assert await admin_conn.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE dedupe_key = $1 AND status = 'queued'", f"{purge.PURGE_JOB}:{next_hour}"
    ) == 1
    # Only admins change the setting.
    member = (
        await client.post("/v1/api-keys", json={"name": "m", "role": "member"}, headers=tenant.headers)
    ).json()
    forbidden = await client.put(
        "/v1/recordings/settings", json={"retention_days": 1}, headers={"Authorization": f"Bearer {member['key']}"}
    )
    assert forbidden.status_code == 403
    await admin_conn.execute("DELETE FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued'", purge.PURGE_JOB)
