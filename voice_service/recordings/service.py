"""Recording rules: who is recorded, the hand-off at the end of a call, the encode-and-store job, deletion.

The life of a recording:

1. The call's media starts: `open_capture` gives a CallCapture, or None when the agent turned recording off
   (`config.recording_enabled: false`: then no file and `recording_url` stays null); `start_recording` does it
   for a MediaSession and taps the capture onto it (telephony/media.py).
2. The call's media ends: `finish_capture` (`finish_recording` for a session) closes the spool, uploads it (raw) to the recordings storage under
   `spool/…` and enqueues the encode job. Through the shared storage, any instance can run that job.
3. The encode job (`encode_and_store`): spool → two-channel MP3 → storage `calls/<tenant>/<call>.mp3`, then in
   one transaction the call's `recording_url` (`/v1/calls/{id}/recording`), `metadata.recording`, and the
   `voice_call.recording_ready` event; the spool is deleted last. It is idempotent (a call that already has
   its recording is left alone) and never touches billing or analysis: a failure only writes
   `metadata.recording_error` and, for a failure that may pass (storage, disk), enqueues a retry with backoff.
4. `delete_recording` (the API) and the retention purge (purge.py) remove the file first, then clear the
   call's `recording_url` and emit `voice_call.recording_deleted`; `metadata.recording_deleted` stops a later
   encode retry from bringing it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import av

from voice_service.auth import Principal
from voice_service.calls import repository as calls_repo
from voice_service.calls.schemas import CallInfo, CallRef
from voice_service.calls.session import MediaSession
from voice_service.db import tenant_tx
from voice_service.enqueue import enqueue
from voice_service.errors import NotFound, ServiceUnavailable
from voice_service.events.outbox import emit
from voice_service.recordings.capture import CallCapture, CaptureResult
from voice_service.recordings.encoder import (
    BIT_RATE,
    CONTENT_TYPE,
    EXTENSION,
    OUTPUT_RATE,
    EmptyRecording,
    encode_spool,
)
from voice_service.recordings.spool import SpoolError
from voice_service.recordings.storage import ObjectNotFound, StorageError, download, get_storage
from voice_service.runtime import Runtime
from voice_service.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "ENCODE_JOB",
    "RecordingPolicy",
    "actor_of",
    "audio_key",
    "delete_recording",
    "encode_and_store",
    "finish_capture",
    "finish_recording",
    "open_capture",
    "recording_enabled",
    "recording_notice",
    "recording_url",
    "recovering",
    "spool_dir",
    "spool_key",
    "start_recording",
]

ENCODE_JOB = "recordings.encode"
SPOOL_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class RecordingPolicy:
    upload_attempts: int = 3  # at the end of the call, before giving the spool up to a later recovery
    upload_backoff_seconds: float = 0.5
    retry_delays_seconds: tuple[float, ...] = (60.0, 300.0, 1800.0, 7200.0, 21600.0)  # encode-job retries


def _policy(runtime: Runtime) -> RecordingPolicy:
    return runtime.recording_policy or RecordingPolicy()


# --- names ---


def recording_url(call_id: uuid.UUID) -> str:
    return f"/v1/calls/{call_id}/recording"


def audio_key(tenant_id: uuid.UUID, call_id: uuid.UUID) -> str:
    return f"calls/{tenant_id}/{call_id}.{EXTENSION}"


def spool_key(tenant_id: uuid.UUID, call_id: uuid.UUID) -> str:
    return f"spool/{tenant_id}/{call_id}.spool"


def spool_dir(settings: Settings) -> Path:
    """Where live calls' spools are written on this instance (local disk, before the upload)."""
    return settings.resolved_data_dir / "recording-spool"


# --- the agent's settings ---


def recording_enabled(agent_config: Mapping[str, Any] | None) -> bool:
    """`config.recording_enabled` (default true)."""
    return (agent_config or {}).get("recording_enabled", True) is not False


def recording_notice(agent_config: Mapping[str, Any] | None) -> str | None:
    """The line to speak at the start of a recorded call (`config.recording_notice`), if any. The conversation
    engine says it before the starter (conversation/services.py reads the same config)."""
    config = agent_config or {}
    notice = str(config.get("recording_notice") or "").strip()
    return notice if notice and recording_enabled(config) else None


# --- the live call ---


async def open_capture(
    runtime: Runtime,
    call: CallInfo,
    *,
    encoding: str,
    sample_rate: int,
    t0: float,
    agent_config: Mapping[str, Any] | None = None,
) -> CallCapture | None:
    """A capture for the call whose media just started (`t0`: its start on the event loop's clock), or None
    when its agent does not record. Without `agent_config` the agent's config is read here."""
    config = agent_config
    if config is None and call.agent_id is not None:
        async with tenant_tx(runtime.pool, call.tenant_id) as conn:
            agent = await calls_repo.get_agent(conn, call.tenant_id, call.agent_id)
        config = agent["config"] if agent is not None else None
    if not recording_enabled(config):
        return None
    path = spool_dir(runtime.settings) / f"{call.tenant_id}.{call.call_id}.spool"
    return await CallCapture.open(path, encoding=encoding, sample_rate=sample_rate, t0=t0)


async def start_recording(runtime: Runtime, session: MediaSession, *, t0: float) -> CallCapture | None:
    """Record a live media session (the carriers' media sockets, a browser call): the capture is opened and tapped
    onto the session; None when its agent does not record, or when the spool cannot be opened (the call goes on
    unrecorded, and `metadata.recording_error` says why). `t0`: the transcript's origin on the session's clock
    (the conversation engine's t0)."""
    info, fmt = session.call, session.format
    try:
        capture = await open_capture(runtime, info, encoding=fmt.encoding, sample_rate=fmt.sample_rate, t0=t0)
    except (OSError, SpoolError) as exc:
        log.warning("the call is not recorded: its spool could not be opened", extra={"detail": str(exc)[:300]})
        await note_error(runtime, info.tenant_id, info.call_id, f"the call was not recorded: {exc}")
        return None
    if capture is not None:
        session.add_tap(capture)
    return capture


async def finish_recording(runtime: Runtime, session: MediaSession, capture: CallCapture) -> None:
    """After the session's end is recorded: hand the recording over (finish_capture). Never raises: a spool that
    could not be handed over stays on this instance's disk for `recover_spools`."""
    ended_at = session.ended_at if session.ended_at is not None else session.t0
    try:
        await finish_capture(runtime, session.call.ref, capture, ended_at=ended_at)
    except Exception:
        log.exception("handing the recording over failed", extra={"call": str(session.call.call_id)})


async def finish_capture(runtime: Runtime, ref: CallRef, capture: CallCapture, *, ended_at: float) -> bool:
    """The call's media has ended: close the spool, upload it and enqueue the encode job. Returns whether the
    job was enqueued. Storage trouble never raises here: the call gets `metadata.recording_error`, and the
    spool stays on this instance's disk for `recover_spools`."""
    result = await capture.close(ended_at)
    if result.caller_seconds == 0 and result.agent_seconds == 0:
        await capture.discard()  # no audio at all: nothing to listen to
        return False
    if not await upload_spool(runtime, ref.tenant_id, ref.id, result):
        return False
    async with tenant_tx(runtime.pool, ref.tenant_id) as conn:
        await enqueue_encode(conn, ref.tenant_id, ref.id)
        if result.error is not None:
            await calls_repo.patch_metadata(
                conn, ref.tenant_id, ref.id, ref.created_at, {"recording_error": f"partial: {result.error}"}
            )
    with contextlib.suppress(FileNotFoundError):
        await asyncio.to_thread(result.path.unlink)
    return True


async def upload_spool(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID, result: CaptureResult) -> bool:
    storage = await get_storage(runtime)
    policy = _policy(runtime)
    last: StorageError | None = None
    for attempt in range(policy.upload_attempts):
        if attempt:
            await asyncio.sleep(policy.upload_backoff_seconds * 4 ** (attempt - 1))
        try:
            await storage.put(spool_key(tenant_id, call_id), result.path, content_type=SPOOL_CONTENT_TYPE)
            return True
        except StorageError as exc:
            last = exc
    log.warning("recording spool upload failed", extra={"call": str(call_id), "detail": str(last)[:300]})
    await note_error(
        runtime, tenant_id, call_id, f"the call's audio could not be uploaded to the recordings storage: {last}"
    )
    return False


async def enqueue_encode(conn: Any, tenant_id: uuid.UUID, call_id: uuid.UUID, *, attempt: int = 1,
                         delay: timedelta | None = None) -> None:
    dedupe = f"recording:{call_id}" if attempt == 1 else f"recording:{call_id}:{attempt}"
    await enqueue(conn, ENCODE_JOB, {"tenant_id": str(tenant_id), "call_id": str(call_id), "attempt": attempt},
                  dedupe_key=dedupe, delay=delay)


async def note_error(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID, message: str) -> None:
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id)
        if state is not None:
            await calls_repo.patch_metadata(
                conn, tenant_id, call_id, state["created_at"], {"recording_error": message[:1000]}
            )


RECOVER_EVERY_SECONDS = 600.0


@contextlib.asynccontextmanager
async def recovering(runtime: Runtime, *, every: float = RECOVER_EVERY_SECONDS) -> AsyncIterator[None]:
    """For an app's lifespan: hand over the spools this instance's disk still holds, at start-up and every
    `every` seconds (recover_spools)."""

    async def loop() -> None:
        while True:
            try:
                handed = await recover_spools(runtime)
            except (OSError, asyncpg.PostgresError, StorageError) as exc:
                log.warning("recovering recording spools failed", extra={"detail": repr(exc)[:300]})
            else:
                if handed:
                    log.info("recording spools recovered", extra={"count": handed})
            await asyncio.sleep(every)

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(loop(), name="recordings-recover-spools")
        try:
            yield
        finally:
            task.cancel()


async def recover_spools(runtime: Runtime, *, idle_seconds: float = 300.0) -> int:
    """Upload the spools this instance's disk still holds (a failed upload, or a process that died mid-call)
    and enqueue their encode jobs; spools written to within `idle_seconds` belong to live calls and are left.
    Returns how many were handed over. Run at start-up and now and then."""
    folder = spool_dir(runtime.settings)

    def idle_spools() -> list[Path]:
        if not folder.is_dir():
            return []
        cutoff = time.time() - idle_seconds
        return [p for p in folder.glob("*.spool") if p.stat().st_mtime < cutoff]

    handed = 0
    for path in await asyncio.to_thread(idle_spools):
        try:
            tenant_part, call_part, _ = path.name.split(".")
            tenant_id, call_id = uuid.UUID(tenant_part), uuid.UUID(call_part)
        except ValueError:
            continue
        size = (await asyncio.to_thread(path.stat)).st_size
        result = CaptureResult(path=path, size=size, duration_seconds=0.0, caller_seconds=0.0, agent_seconds=0.0)
        if await upload_spool(runtime, tenant_id, call_id, result):
            async with tenant_tx(runtime.pool, tenant_id) as conn:
                await enqueue_encode(conn, tenant_id, call_id)
            await asyncio.to_thread(path.unlink)
            handed += 1
    return handed


# --- the encode job ---


_PERMANENT = (ObjectNotFound, EmptyRecording, SpoolError)


async def encode_and_store(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID, *, attempt: int = 1) -> str:
    """Encode the call's spool and store the recording; returns what happened ("stored", "already_stored",
    "deleted", "no_call", "failed", "retrying")."""
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id)
    if state is None:
        return "no_call"
    storage = await get_storage(runtime)
    metadata = state["metadata"] or {}
    if metadata.get("recording_deleted") or state["recording_url"] is not None:
        await _forget_spool(runtime, tenant_id, call_id)
        return "deleted" if metadata.get("recording_deleted") else "already_stored"

    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="recording-"))
    try:
        spool, target = work / "call.spool", work / f"call.{EXTENSION}"
        started = time.perf_counter()
        await download(storage, spool_key(tenant_id, call_id), spool)
        encoded = await asyncio.to_thread(encode_spool, spool, target)
        encode_seconds = time.perf_counter() - started
        size = await storage.put(audio_key(tenant_id, call_id), target, content_type=CONTENT_TYPE)
    except _PERMANENT as exc:
        reason = (
            "the call's audio is not in the recordings storage"
            if isinstance(exc, ObjectNotFound)
            else f"the call's audio could not be encoded: {exc}"
        )
        await note_error(runtime, tenant_id, call_id, reason)
        log.warning("recording failed", extra={"call": str(call_id), "detail": reason[:300]})
        return "failed"
    except (StorageError, OSError, av.FFmpegError) as exc:
        return await _retry_later(runtime, tenant_id, call_id, attempt, exc)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)

    stored_at = datetime.now(UTC)
    info = {
        "format": EXTENSION,
        "content_type": CONTENT_TYPE,
        "bytes": size,
        "duration_ms": encoded.duration_ms,
        "channels": ["caller", "agent"],
        "sample_rate": OUTPUT_RATE,
        "bit_rate": BIT_RATE,
        "stored_at": stored_at.isoformat(),
    }
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id, for_update=True)
        deleted_meanwhile = state is None or (state["metadata"] or {}).get("recording_deleted")
        if not deleted_meanwhile and state is not None and state["recording_url"] is None:
            url = recording_url(call_id)
            await calls_repo.set_recording(
                conn, tenant_id, call_id, state["created_at"], url, {"recording": info}, ("recording_error",)
            )
            await emit(
                conn,
                tenant_id=tenant_id,
                event_type="voice_call.recording_ready",
                aggregate_type="voice_call",
                aggregate_id=call_id,
                payload={"call_id": str(call_id), "recording_url": url, **info},
            )
    if deleted_meanwhile:
        await _delete_quietly(storage, audio_key(tenant_id, call_id))
    await _forget_spool(runtime, tenant_id, call_id)
    log.info(
        "recording stored",
        extra={"call": str(call_id), "bytes": size, "duration_ms": encoded.duration_ms,
               "encode_seconds": round(encode_seconds, 3)},
    )
    return "deleted" if deleted_meanwhile else "stored"


async def _retry_later(
    runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID, attempt: int, exc: Exception
) -> str:
    delays = _policy(runtime).retry_delays_seconds
    detail = f"{type(exc).__name__}: {exc}"[:500]
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id)
        if state is None:
            return "no_call"
        if attempt <= len(delays):
            delay = timedelta(seconds=delays[attempt - 1])
            message = f"the recording could not be stored yet (attempt {attempt}; retrying): {detail}"
            await enqueue_encode(conn, tenant_id, call_id, attempt=attempt + 1, delay=delay)
        else:
            message = f"the recording could not be stored (gave up after {attempt} attempts): {detail}"
        await calls_repo.patch_metadata(conn, tenant_id, call_id, state["created_at"], {"recording_error": message})
    log.warning("recording attempt failed", extra={"call": str(call_id), "attempt": attempt, "detail": detail})
    return "retrying" if attempt <= len(delays) else "failed"


async def _delete_quietly(storage: Any, key: str) -> None:
    try:
        await storage.delete(key)
    except StorageError as exc:
        log.warning("deleting a recording object failed", extra={"key": key, "detail": str(exc)[:300]})


async def _forget_spool(runtime: Runtime, tenant_id: uuid.UUID, call_id: uuid.UUID) -> None:
    await _delete_quietly(await get_storage(runtime), spool_key(tenant_id, call_id))


# --- deletion ---


def actor_of(principal: Principal) -> dict[str, Any]:
    """Who did it, for the audit event."""
    return {"kind": principal.kind, "user_id": _str(principal.user_id), "api_key_id": _str(principal.key_id)}


async def delete_recording(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    *,
    reason: str = "api",
    actor: dict[str, Any] | None = None,
    retention_days: int | None = None,
) -> None:
    """Remove the call's recording: the file first (a failure leaves everything as it was), then the call's
    recording_url and metadata.recording, audited by `voice_call.recording_deleted` (reason "api" with the
    actor, or "retention")."""
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id)
    if state is None:
        raise NotFound(f"call {call_id} not found")
    if state["recording_url"] is None:
        raise NotFound(f"call {call_id} has no recording")
    storage = await get_storage(runtime)
    try:
        await storage.delete(audio_key(tenant_id, call_id))
    except StorageError as exc:
        log.warning("deleting a recording failed", extra={"call": str(call_id), "detail": str(exc)[:300]})
        raise ServiceUnavailable("the recordings storage is unavailable; try again shortly") from exc
    await _delete_quietly(storage, spool_key(tenant_id, call_id))
    deleted: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "reason": reason}
    if retention_days is not None:
        deleted["retention_days"] = retention_days
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        state = await calls_repo.recording_state(conn, tenant_id, call_id, for_update=True)
        if state is None or state["recording_url"] is None:
            return  # deleted by a concurrent request: its event is the audit record
        previous = (state["metadata"] or {}).get("recording") or {}
        await calls_repo.set_recording(
            conn, tenant_id, call_id, state["created_at"], None, {"recording_deleted": deleted},
            ("recording", "recording_error"),
        )
        await emit(
            conn,
            tenant_id=tenant_id,
            event_type="voice_call.recording_deleted",
            aggregate_type="voice_call",
            aggregate_id=call_id,
            payload={
                "call_id": str(call_id),
                "reason": reason,
                **({"retention_days": retention_days} if retention_days is not None else {}),
                "deleted_by": actor,
                "bytes": previous.get("bytes"),
                "duration_ms": previous.get("duration_ms"),
            },
        )


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
