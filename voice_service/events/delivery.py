"""Sending one webhook delivery: a signed POST, the attempt logged, then success, a retry later, or give up.

At least once: the HTTP request is sent outside any transaction and the outcome recorded afterwards, so a crash in
between resends the same event (same `webhook-id`) on the re-picked job; consumers dedupe on the event id. Retries
back off exponentially (with jitter); an endpoint that fails `disable_after` attempts in a row is disabled and its
pending deliveries abandoned (the pull API still has every event).

Targets are guarded (targets.py): a URL that fails the registration checks, or a host resolving to a disallowed
address, is a failed attempt like any other ("target refused: …"), and redirects are never followed. A URL that can
never be called (not a valid URL or host, e.g. stored before hosts were normalised) fails the delivery at once. The signing
secret is decrypted from the endpoint row (secretbox.py); a plaintext one from before 0033 is encrypted on use.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from voice_service.db import tenant_tx
from voice_service.enqueue import enqueue
from voice_service.events import repository as repo
from voice_service.events import signing
from voice_service.events.secretbox import SecretBoxError, box_for
from voice_service.events.service import secret_context
from voice_service.events.targets import InvalidTarget, TargetRejected, check_url, guarded_client
from voice_service.runtime import Runtime

log = logging.getLogger(__name__)

USER_AGENT = "voice-service-webhooks/1"
_body_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class DeliveryPolicy:
    base_delay_seconds: float = 5.0
    factor: float = 4.0
    max_delay_seconds: float = 10 * 3600.0
    max_attempts: int = 10
    disable_after: int = 20  # consecutive failed attempts on one endpoint, across its deliveries
    timeout_seconds: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number `attempt` (1-based)."""
        base = min(self.base_delay_seconds * self.factor ** (attempt - 1), self.max_delay_seconds)
        return timedelta(seconds=base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_POLICY = DeliveryPolicy()  # tests and deployments may set another as `runtime.webhook_policy`


def webhook_client(runtime: Runtime) -> httpx.AsyncClient:
    """The process's client for webhook targets (see targets.guarded_client); closed with the Runtime."""
    client = runtime.webhook_client
    if client is None:
        client = guarded_client(allow_private=runtime.settings.webhook_allow_private_targets)
        runtime.webhook_client = client
        runtime.exit_stack.push_async_callback(client.aclose)
    return client


def event_body(
    event_id: uuid.UUID,
    event_type: str,
    created_at: datetime,
    seq: int,
    aggregate_type: str,
    aggregate_id: uuid.UUID | None,
    payload: Any,
) -> bytes:
    """The Standard Webhooks payload shape: {type, timestamp, data}, plus the event id and its outbox seq."""
    return _body_encoder.encode(
        {
            "id": str(event_id),
            "type": event_type,
            "timestamp": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "seq": seq,
            "aggregate_type": aggregate_type,
            "aggregate_id": None if aggregate_id is None else str(aggregate_id),
            "data": payload,
        }
    )


async def deliver(runtime: Runtime, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> str:
    """One attempt of one delivery; returns the delivery's status afterwards ('skipped' if nothing was done)."""
    policy = runtime.webhook_policy or DEFAULT_POLICY
    settings = runtime.settings
    box = await box_for(settings)
    async with tenant_tx(runtime.pool, tenant_id) as conn:
        row = await repo.delivery_for_attempt(conn, tenant_id, delivery_id)
        # not_due: an early duplicate of a job whose attempt was already recorded and rescheduled.
        if row is None or row["status"] != "pending" or row["not_due"]:
            return "skipped"
        if row["endpoint_status"] != "active" or row["endpoint_deleted_at"] is not None:
            await repo.abandon_pending(conn, tenant_id, row["endpoint_id"], "endpoint disabled or deleted")
            return "abandoned"
        context = secret_context(tenant_id, row["endpoint_id"])
        secret: str | None = None
        error: str | None = None
        if row["secret_ciphertext"] is not None:
            try:
                secret = box.decrypt(row["secret_ciphertext"], context)
            except SecretBoxError as exc:
                log.error("webhook secret undecryptable", extra={"endpoint_id": str(row["endpoint_id"])})
                error = f"signing secret unavailable: {exc}"
        else:
            # A secret stored in plain text before 0033: encrypted on its first use.
            secret = row["secret"]
            await repo.encrypt_legacy_secret(
                conn, tenant_id, row["endpoint_id"], box.encrypt(secret, context)
            )

    attempt = row["attempts"] + 1
    body = event_body(
        row["event_id"],
        row["event_type"],
        row["event_created_at"],
        row["seq"],
        row["aggregate_type"],
        row["aggregate_id"],
        row["payload"],
    )
    url = row["url"]
    unusable = False  # the URL can never be called: the delivery fails now rather than retrying for days
    if error is None:
        try:
            url = check_url(
                row["url"],
                allow_insecure=settings.webhook_allow_insecure_targets,
                allow_private=settings.webhook_allow_private_targets,
            )
        except TargetRejected as exc:
            error = f"target refused: url {exc}"
            unusable = isinstance(exc, InvalidTarget)
    status_code: int | None = None
    excerpt: str | None = None
    started = time.monotonic()
    if error is None and secret is not None:
        headers = signing.headers(secret, str(row["event_id"]), int(time.time()), body)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            # The guarded client re-resolves the host at connect time and refuses disallowed addresses.
            response = await webhook_client(runtime).post(
                url,
                content=body,
                headers=headers,
                timeout=policy.timeout_seconds,
                follow_redirects=False,
            )
            status_code = response.status_code
            excerpt = response.text[:500] or None
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except httpx.InvalidURL as exc:  # not an HTTPError: it would escape the job and leave no attempt
            error, unusable = f"target refused: url {exc}"[:500], True
    duration_ms = int((time.monotonic() - started) * 1000)
    ok = error is None

    async with tenant_tx(runtime.pool, tenant_id) as conn:
        locked = await repo.lock_delivery(conn, tenant_id, delivery_id)
        if locked is None or locked["status"] != "pending" or locked["attempts"] >= attempt:
            return "skipped"  # a re-picked copy of this job recorded the attempt already
        await repo.insert_attempt(
            conn,
            tenant_id,
            delivery_id,
            attempt,
            status_code=status_code,
            error=error,
            response_body=excerpt,
            duration_ms=duration_ms,
        )
        if ok:
            await repo.mark_delivery(
                conn,
                tenant_id,
                delivery_id,
                status="succeeded",
                attempts=attempt,
                status_code=status_code,
                error=None,
                retry_in=None,
            )
            await repo.endpoint_succeeded(conn, tenant_id, row["endpoint_id"])
            return "succeeded"
        disabled = await repo.endpoint_failed(
            conn,
            tenant_id,
            row["endpoint_id"],
            policy.disable_after,
            f"disabled after {policy.disable_after} consecutive failed deliveries (last: {error})",
        )
        if disabled:
            await repo.mark_delivery(
                conn,
                tenant_id,
                delivery_id,
                status="abandoned",
                attempts=attempt,
                status_code=status_code,
                error=error,
                retry_in=None,
            )
            await repo.abandon_pending(conn, tenant_id, row["endpoint_id"], "endpoint disabled")
            log.warning("webhook endpoint disabled", extra={"endpoint_id": str(row["endpoint_id"])})
            return "abandoned"
        if attempt >= policy.max_attempts or unusable:
            await repo.mark_delivery(
                conn,
                tenant_id,
                delivery_id,
                status="failed",
                attempts=attempt,
                status_code=status_code,
                error=error,
                retry_in=None,
            )
            return "failed"
        wait = policy.delay(attempt)
        await repo.mark_delivery(
            conn,
            tenant_id,
            delivery_id,
            status="pending",
            attempts=attempt,
            status_code=status_code,
            error=error,
            retry_in=wait,
        )
        await enqueue(
            conn, "events.deliver", {"tenant_id": str(tenant_id), "delivery_id": str(delivery_id)}, delay=wait
        )
        return "pending"
