"""Batches through the API and the dispatcher run in-process: input checks, skipped entries, idempotency, limits,
retries, do-not-call, calling windows (injected clock), pacing, pause/resume/cancel, recovery of a dead claim.

Calls are "placed" by a recording placer and ended the way the telephony webhooks end them (terminal status, then
the batches hook in the same transaction); the simulator-driven runs are in test_batches_dispatch.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.batches import (
    RecordingPlacer,
    assert_counts_add_up,
    distinct_phones,
    entries,
    entry_statuses,
    finish_call,
    launch,
    setup_tenant,
    tick,
    unique_phone,
)
from voice_service.batches import dispatcher
from voice_service.batches.dispatcher import run_tick
from voice_service.runtime import Runtime

# The dispatcher's clock and queued jobs are reset after each test (tests/integration/conftest.py).
pytestmark = pytest.mark.usefixtures("batch_cleanup")


async def get_batch(client: Any, tenant: Any, batch_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/batches/{batch_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def phones(n: int) -> list[dict[str, Any]]:
    return [{"phone": p} for p in distinct_phones(n)]


# --- input ---


async def test_bad_input_is_a_4xx_naming_the_problem_and_creates_nothing(
    client: Any, tenant: Any, make_tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    other = await make_tenant()
    other_setup = await setup_tenant(client, other, runtime.pool)
    base = {
        "agent_id": setup["agent_id"],
        "from_number_id": setup["number_ids"][0],
        "entries": [{"phone": unique_phone(), "first_name": "Ann"}],
    }
    cases = [
        ({"agent_id": 987654321}, 422, "agent_id"),
        ({"agent_id": other_setup["agent_id"]}, 422, "agent_id"),
        ({"from_number_id": other_setup["number_ids"][0]}, 422, "from_number_id"),
        (
            {
                "from_number_id": None,
                "from_number_ids": [setup["number_ids"][0], other_setup["number_ids"][0]],
            },
            422,
            "from_number_ids[1]",
        ),
        ({"from_number_id": None}, 422, "from_number_id"),
        ({"entries": phones(10_001)}, 400, "entries"),
        ({"entries": []}, 400, "entries"),
        ({"calling_window": {"start": "17:00", "end": "09:00"}}, 422, "calling_window"),
        ({"calling_window": {"start": "9am", "end": "17:00"}}, 400, "calling_window.start"),
        (
            {"calling_window": {"start": "09:00", "end": "17:00", "days": ["funday"]}},
            400,
            "calling_window.days[0]",
        ),
        ({"timezone": "Mars/Olympus"}, 422, "timezone"),
        ({"max_concurrency": 0}, 400, "max_concurrency"),
        ({"retry": {"max_attempts": 3, "retry_on": ["bored"]}}, 400, "retry.retry_on[0]"),
        ({"entries": [{"first_name": "no phone, no lead"}]}, 422, "entries[0]"),
    ]
    for patch, status, field in cases:
        r = await client.post("/v1/batches", json={**base, **patch}, headers=tenant.headers)
        assert r.status_code == status, (patch.keys(), r.text)
        problem = r.json()
        assert problem["errors"][0]["field"] == field, (patch.keys(), problem)
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM voice_call_batches WHERE tenant_id = $1", tenant.id)
        == 0
    )
    assert await admin_conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant.id) == 0
    assert (
        await admin_conn.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'batches.dispatch' "
            "AND convert_from(payload, 'UTF8')::jsonb->>'tenant_id' = $1",
            str(tenant.id),
        )
        == 0
    )

    # A viewer cannot launch.
    viewer = await client.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=tenant.headers)
    r = await client.post(
        "/v1/batches", json=base, headers={"Authorization": f"Bearer {viewer.json()['key']}"}
    )
    assert r.status_code == 403


async def test_skipped_entries_keep_their_reason_and_phone_rows_become_leads(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    dnc = await client.post(
        "/v1/leads",
        json={"phone": unique_phone(), "first_name": "Opted", "do_not_call": True},
        headers=tenant.headers,
    )
    known = await client.post(
        "/v1/leads",
        json={"phone": unique_phone(), "first_name": "Known", "timezone": "Europe/Paris"},
        headers=tenant.headers,
    )
    assert dnc.status_code == known.status_code == 201, (dnc.text, known.text)
    new_phone = unique_phone()
    batch = await launch(
        client,
        tenant,
        setup,
        [
            {"phone": new_phone, "first_name": "Newbie", "variables": {"offer": "10%"}},
            {"phone": "+1 (415) 2"},  # invalid
            {"phone": new_phone},  # duplicate of the first
            {"lead_id": dnc.json()["id"]},  # do not call
            {"lead_id": str(uuid.uuid4())},  # not a lead of this tenant
            {"lead_id": known.json()["id"]},
            {"phone": known.json()["phone"]},  # duplicate through the lead's phone
        ],
        variables={"campaign": "spring"},
    )
    assert batch["counts"] == {
        "total": 7,
        "queued": 2,
        "in_progress": 0,
        "retrying": 0,
        "completed": 0,
        "failed": 0,
        "skipped": 5,
        "cancelled": 0,
    }
    assert_counts_add_up(batch)
    skipped = await entries(client, tenant, batch["id"], "skipped")
    assert [(e["position"], e["outcome"]) for e in skipped] == [
        (1, "invalid_phone"),
        (2, "duplicate"),
        (3, "do_not_call"),
        (4, "lead_not_found"),
        (6, "duplicate"),
    ]
    queued = await entries(client, tenant, batch["id"], "queued")
    assert [e["phone"] for e in queued] == [new_phone, known.json()["phone"]]
    assert queued[0]["variables"] == {"first_name": "Newbie", "offer": "10%"}
    assert queued[1]["timezone"] == "Europe/Paris"  # the lead's zone wins over the number's
    assert queued[0]["timezone"] == "America/Los_Angeles"  # +1 415: from the number
    lead = await client.get(f"/v1/leads/{queued[0]['lead_id']}", headers=tenant.headers)
    assert lead.status_code == 200 and lead.json()["first_name"] == "Newbie"

    # Adding entries continues the positions and still refuses duplicates.
    r = await client.post(
        f"/v1/batches/{batch['id']}/entries",
        json={"entries": [{"phone": new_phone}, {"phone": unique_phone()}]},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["skipped"]) == (1, 1)
    assert r.json()["batch"]["counts"]["total"] == 9
    later = await entries(client, tenant, batch["id"])
    assert [e["position"] for e in later] == list(range(9))
    assert later[7]["outcome"] == "duplicate"


async def test_idempotency_key(
    client: Any, tenant: Any, runtime: Runtime, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    body = {"agent_id": setup["agent_id"], "from_number_id": setup["number_ids"][0], "entries": phones(3)}
    h = {**tenant.headers, "Idempotency-Key": "launch-1"}
    first = await client.post("/v1/batches", json=body, headers=h)
    again = await client.post("/v1/batches", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await client.post("/v1/batches", json={**body, "name": "changed"}, headers=h)
    assert other.status_code == 409 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM voice_call_batches WHERE tenant_id = $1", tenant.id)
        == 1
    )


async def test_wallet_must_cover_the_estimate(client: Any, make_tenant: Any, runtime: Runtime) -> None:
    poor = await make_tenant()
    h = poor.headers
    agent = (await client.post("/v1/agents", json={"name": "A"}, headers=h)).json()
    number = (
        await client.post(
            "/v1/numbers", json={"phone_number": unique_phone("+1212"), "provider": "simulator"}, headers=h
        )
    ).json()
    r = await client.post(
        "/v1/batches",
        json={"agent_id": agent["id"], "from_number_id": number["id"], "entries": phones(2)},
        headers=h,
    )
    assert r.status_code == 402, r.text
    assert (await client.get("/v1/batches", headers=h)).json()["items"] == []


# --- dispatch ---


async def test_concurrency_retries_and_counters(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(
        client,
        tenant,
        setup,
        phones(5),
        max_concurrency=2,
        retry={"max_attempts": 3, "retry_on": ["busy", "no_answer"], "backoff_seconds": [0]},
    )
    first = await tick(runtime, tenant, batch)
    assert len(first) == 2 and len(placer.placed) == 2
    assert await tick(runtime, tenant, batch) == []  # at the limit: nothing more starts
    b = await get_batch(client, tenant, batch["id"])
    assert (b["status"], b["counts"]["in_progress"], b["counts"]["queued"]) == ("running", 2, 3)

    # Busy → retrying (a new attempt later); answered → completed. Each frees its slot.
    await finish_call(
        runtime, tenant.id, first[0].ref.id, first[0].ref.created_at, "declined", end_reason="busy"
    )
    await finish_call(
        runtime, tenant.id, first[1].ref.id, first[1].ref.created_at, "ended", answered_by="human"
    )
    b = await get_batch(client, tenant, batch["id"])
    assert (b["counts"]["retrying"], b["counts"]["completed"], b["counts"]["in_progress"]) == (1, 1, 0)
    assert_counts_add_up(b)

    # Run the batch to the end. The busy entry is retried behind the entries still queued; its second attempt
    # ends no-answer (the entry shows that latest attempt), its third busy again: the last one allowed.
    retry_entry = first[0].entry_id
    attempts_seen = []
    while placed := await tick(runtime, tenant, batch):
        assert len(placed) <= 2
        for p in placed:
            if p.entry_id != retry_entry:
                await finish_call(
                    runtime, tenant.id, p.ref.id, p.ref.created_at, "ended", answered_by="human"
                )
                continue
            attempt = await admin_conn.fetchval("SELECT attempt FROM voice_call_logs WHERE id = $1", p.ref.id)
            attempts_seen.append(attempt)
            reason = "no_answer" if attempt == 2 else "busy"
            await finish_call(runtime, tenant.id, p.ref.id, p.ref.created_at, "declined", end_reason=reason)
            if attempt == 2:
                e = next(e for e in await entries(client, tenant, batch["id"]) if e["id"] == str(retry_entry))
                assert (e["status"], e["attempts"], e["outcome"], e["last_call_id"]) == (
                    "retrying",
                    2,
                    "no_answer",
                    str(p.ref.id),
                )
    assert attempts_seen == [2, 3]
    calls = await admin_conn.fetch(
        "SELECT attempt, status FROM voice_call_logs WHERE batch_entry_id = $1 ORDER BY attempt", retry_entry
    )
    assert [(c["attempt"], c["status"]) for c in calls] == [(1, "declined"), (2, "declined"), (3, "declined")]
    b = await get_batch(client, tenant, batch["id"])
    assert b["status"] == "completed" and b["completed_at"] is not None
    assert b["counts"] | {"total": 0} == {
        "total": 0,
        "queued": 0,
        "in_progress": 0,
        "retrying": 0,
        "completed": 4,
        "failed": 1,
        "skipped": 0,
        "cancelled": 0,
    }
    assert_counts_add_up(b)
    e = next(e for e in await entries(client, tenant, batch["id"]) if e["id"] == str(retry_entry))
    assert (e["status"], e["attempts"], e["outcome"]) == ("failed", 3, "busy")
    # One call per (entry, attempt).
    dupes = await admin_conn.fetchval(
        "SELECT count(*) FROM (SELECT batch_entry_id, attempt FROM voice_call_logs WHERE batch_id = $1 "
        "GROUP BY 1, 2 HAVING count(*) > 1) d",
        uuid.UUID(batch["id"]),
    )
    assert dupes == 0
    reservation = await admin_conn.fetchrow(
        "SELECT status FROM billing_wallet_reservations WHERE batch_id = $1", uuid.UUID(batch["id"])
    )
    assert reservation["status"] == "released"


async def test_do_not_call_leads_are_skipped_and_never_retried(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(
        client,
        tenant,
        setup,
        phones(3),
        max_concurrency=1,
        retry={"max_attempts": 5, "retry_on": ["busy"], "backoff_seconds": [0]},
    )
    [p] = await tick(runtime, tenant, batch)
    queued = await entries(client, tenant, batch["id"], "queued")
    # One lead opts out while its attempt is live, another before it is ever dialled.
    for lead_id in (
        next(e for e in await entries(client, tenant, batch["id"]) if e["id"] == str(p.entry_id))["lead_id"],
        queued[0]["lead_id"],
    ):
        r = await client.patch(f"/v1/leads/{lead_id}", json={"do_not_call": True}, headers=tenant.headers)
        assert r.status_code == 200, r.text
    await finish_call(runtime, tenant.id, p.ref.id, p.ref.created_at, "declined", end_reason="busy")
    e = next(e for e in await entries(client, tenant, batch["id"]) if e["id"] == str(p.entry_id))
    assert (e["status"], e["outcome"]) == ("failed", "busy")  # busy is retried, but not for this lead

    [p2] = await tick(runtime, tenant, batch)
    assert p2.entry_id == uuid.UUID(queued[1]["id"])
    skipped = await entries(client, tenant, batch["id"], "skipped")
    assert [(s["id"], s["outcome"]) for s in skipped] == [(queued[0]["id"], "do_not_call")]
    await finish_call(
        runtime, tenant.id, p2.ref.id, p2.ref.created_at, "ended", answered_by="machine_end_beep"
    )
    b = await get_batch(client, tenant, batch["id"])
    assert b["status"] == "completed"
    assert (b["counts"]["completed"], b["counts"]["failed"], b["counts"]["skipped"]) == (1, 1, 1)
    e2 = next(e for e in await entries(client, tenant, batch["id"]) if e["id"] == str(p2.entry_id))
    assert e2["outcome"] == "voicemail"


def _next_weekday(weekday: int, hour: int, minute: int = 0) -> datetime:
    """A moment (UTC) at least a week ahead of the real clock: entries are due from their creation time."""
    day = datetime.now(UTC).date() + timedelta(days=8)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def test_calling_window_waits_for_each_leads_local_time(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    ny = [{"phone": unique_phone("+1212")} for _ in range(2)]  # America/New_York from the number
    tokyo = [{"phone": unique_phone(), "timezone": "Asia/Tokyo"} for _ in range(2)]  # the lead's own zone
    batch = await launch(
        client,
        tenant,
        setup,
        ny + tokyo,
        max_concurrency=None,
        calling_window={"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
    )

    # Wednesday 14:00 UTC: 09:00/10:00 in New York (open), 23:00 in Tokyo (closed).
    wednesday = _next_weekday(2, 14)
    dispatcher.set_clock(lambda: wednesday)
    placed = await tick(runtime, tenant, batch)
    dialled = {e["phone"] for e in await entries(client, tenant, batch["id"], "dialing")}
    assert len(placed) == 2 and dialled == {e["phone"] for e in ny}
    # The next tick is booked for Tokyo's opening: Thursday 09:00 JST = Thursday 00:00 UTC.
    wake = await admin_conn.fetchval(
        "SELECT wake_at FROM voice_call_batches WHERE id = $1", uuid.UUID(batch["id"])
    )
    assert wake == wednesday + timedelta(hours=10)
    job_delay = await admin_conn.fetchval(
        "SELECT max(execute_after - created) FROM pgqueuer WHERE entrypoint = 'batches.dispatch' "
        "AND convert_from(payload, 'UTF8')::jsonb->>'batch_id' = $1",
        batch["id"],
    )
    assert timedelta(hours=9, minutes=59) < job_delay <= timedelta(hours=10)

    dispatcher.set_clock(lambda: wednesday + timedelta(hours=9, minutes=59))
    assert await tick(runtime, tenant, batch) == []
    dispatcher.set_clock(lambda: wednesday + timedelta(hours=10, minutes=30))
    placed = await tick(runtime, tenant, batch)
    assert {e["phone"] for e in await entries(client, tenant, batch["id"], "dialing")} == {
        e["phone"] for e in ny + tokyo
    }
    assert len(placed) == 2

    # Saturday is not a calling day anywhere.
    saturday = _next_weekday(5, 15)
    for p in placed:
        await finish_call(runtime, tenant.id, p.ref.id, p.ref.created_at, "declined", end_reason="busy")
    await admin_conn.execute(
        'UPDATE voice_call_batches SET retry_policy = \'{"max_attempts": 2, "retry_on": ["busy"], '
        '"backoff_seconds": [0]}\' WHERE id = $1',
        uuid.UUID(batch["id"]),
    )
    dispatcher.set_clock(lambda: saturday)
    assert await tick(runtime, tenant, batch) == []


async def test_pause_resume_cancel(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(client, tenant, setup, phones(6), max_concurrency=2)
    h = tenant.headers
    first = await tick(runtime, tenant, batch)
    assert len(first) == 2

    r = await client.post(f"/v1/batches/{batch['id']}/pause", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "paused"
    await finish_call(
        runtime, tenant.id, first[0].ref.id, first[0].ref.created_at, "ended", answered_by="human"
    )
    assert await tick(runtime, tenant, batch) == []  # paused: a free slot starts nothing
    r = await client.post(f"/v1/batches/{batch['id']}/resume", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "running"
    resumed = await tick(runtime, tenant, batch)
    assert len(resumed) == 1

    r = await client.post(f"/v1/batches/{batch['id']}/cancel", headers=h)
    assert r.status_code == 200
    b = r.json()
    assert b["status"] == "cancelled"
    assert (b["counts"]["cancelled"], b["counts"]["in_progress"], b["counts"]["completed"]) == (3, 2, 1)
    assert await tick(runtime, tenant, batch) == []
    # Calls already live are not ended by the cancel; when they end, their entries take the result.
    await finish_call(
        runtime, tenant.id, first[1].ref.id, first[1].ref.created_at, "ended", answered_by="human"
    )
    await finish_call(
        runtime, tenant.id, resumed[0].ref.id, resumed[0].ref.created_at, "declined", end_reason="no_answer"
    )
    b = await get_batch(client, tenant, batch["id"])
    assert b["status"] == "cancelled"
    assert (b["counts"]["completed"], b["counts"]["failed"], b["counts"]["cancelled"]) == (2, 1, 3)
    assert_counts_add_up(b)
    for action in ("pause", "resume"):
        r = await client.post(f"/v1/batches/{batch['id']}/{action}", headers=h)
        assert r.status_code == 409, r.text
    r = await client.post(f"/v1/batches/{batch['id']}/entries", json={"entries": phones(1)}, headers=h)
    assert r.status_code == 409


async def test_cancel_stops_calls_waiting_for_a_pacing_slot(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(client, tenant, setup, phones(20), max_concurrency=None, calls_per_second=4)
    import asyncio

    task = asyncio.create_task(run_tick(runtime, tenant.id, uuid.UUID(batch["id"])))
    await asyncio.sleep(0.1)
    r = await client.post(f"/v1/batches/{batch['id']}/cancel", headers=tenant.headers)
    assert r.status_code == 200
    result = await task
    # Slots 0.25 s apart within the 1 s horizon: the first call goes at once, the later ones see the cancel.
    assert len(result.placements) >= 4
    assert len(placer.placed) == 1
    b = await get_batch(client, tenant, batch["id"])
    assert (b["counts"]["in_progress"], b["counts"]["cancelled"]) == (1, 19)
    assert_counts_add_up(b)


async def test_pacing_spaces_call_starts(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool, numbers=2)
    body = {
        "agent_id": setup["agent_id"],
        "from_number_ids": setup["number_ids"],
        "entries": phones(20),
        "max_concurrency": None,
        "calls_per_second": 5,
    }
    r = await client.post("/v1/batches", json=body, headers=tenant.headers)
    assert r.status_code == 201
    batch = r.json()
    ticks = 0
    while len(placer.placed) < 20:
        result = await run_tick(runtime, tenant.id, uuid.UUID(batch["id"]))
        assert result.placements, "a tick with due entries and free slots places calls"
        ticks += 1
    assert ticks >= 2  # one tick claims only the slots of the next second
    numbers = {
        r["id"]: r["from_number_id"]
        for r in await admin_conn.fetch(
            "SELECT id, from_number_id FROM voice_call_logs WHERE batch_id = $1", uuid.UUID(batch["id"])
        )
    }
    per_number: dict[Any, list[float]] = {}
    for ref, t in placer.placed:
        per_number.setdefault(numbers[ref.id], []).append(t)
    assert sorted(len(v) for v in per_number.values()) == [10, 10]  # rotated over both numbers
    for times in per_number.values():
        # At most 5 starts per second per number: any 6 consecutive starts span a second (less timer jitter).
        spans = [times[i + 5] - times[i] for i in range(len(times) - 5)]
        assert min(spans) >= 0.97, spans


async def test_tenant_cap_holds_across_batches(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    await admin_conn.execute(
        "INSERT INTO billing_feature_entitlements (tenant_id, feature_key, metadata) VALUES ($1, 'voice-agent', "
        '\'{"max_concurrent_calls": 4, "reserved_concurrency": 1}\')',
        tenant.id,
    )
    a = await launch(client, tenant, setup, phones(5), max_concurrency=10)
    b = await launch(client, tenant, setup, phones(5), max_concurrency=10)
    assert len(await tick(runtime, tenant, a)) == 3  # 4 minus 1 kept for inbound calls
    assert await tick(runtime, tenant, b) == []
    wake = await admin_conn.fetchval(
        "SELECT wake_at FROM voice_call_batches WHERE id = $1", uuid.UUID(b["id"])
    )
    assert wake is not None  # it looks again shortly
    first = placer.placed[0][0]
    await finish_call(runtime, tenant.id, first.id, first.created_at, "ended", answered_by="human")
    assert len(await tick(runtime, tenant, b)) == 1


async def test_claim_of_a_dead_dispatcher_is_not_dialled_again(
    client: Any, tenant: Any, runtime: Runtime, placer: RecordingPlacer, admin_conn: asyncpg.Connection
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(
        client,
        tenant,
        setup,
        phones(3),
        max_concurrency=3,
        retry={"max_attempts": 2, "retry_on": ["failed"], "backoff_seconds": [0]},
    )
    placed = await tick(runtime, tenant, batch)
    assert len(placed) == 3
    # Two claims look like those of a process killed before it recorded the provider's call id: their lease is
    # not held by anyone. The third was placed (it has a provider call id).
    await admin_conn.execute(
        "UPDATE voice_call_batch_entries SET claimed_by = 7, claimed_at = now() - interval '1 minute' "
        "WHERE batch_id = $1",
        uuid.UUID(batch["id"]),
    )
    await admin_conn.execute(
        "UPDATE voice_call_logs SET provider_call_id = 'CAplaced', status = 'ringing' "
        "WHERE id = $1 AND created_at = $2",
        placed[2].ref.id,
        placed[2].ref.created_at,
    )
    retried = await tick(runtime, tenant, batch)
    assert sorted(p.entry_id for p in retried) == sorted(p.entry_id for p in placed[:2])
    calls = await admin_conn.fetch(
        "SELECT batch_entry_id, attempt, status, metadata->>'end_reason' AS reason FROM voice_call_logs "
        "WHERE batch_id = $1 ORDER BY batch_entry_id, attempt",
        uuid.UUID(batch["id"]),
    )
    by_entry: dict[Any, list[tuple[int, str, str | None]]] = {}
    for c in calls:
        by_entry.setdefault(c["batch_entry_id"], []).append((c["attempt"], c["status"], c["reason"]))
    for p in placed[:2]:
        assert by_entry[p.entry_id] == [(1, "failed", "dispatch_interrupted"), (2, "pending", None)]
    assert by_entry[placed[2].entry_id] == [(1, "ringing", None)]  # a placed call is never touched
    # Claims of this (live) process are left alone.
    assert await tick(runtime, tenant, batch) == []
    assert await entry_statuses(admin_conn, batch["id"]) == {"dialing": 3}


async def test_lists_and_reads_are_tenant_scoped(
    client: Any, tenant: Any, make_tenant: Any, runtime: Runtime
) -> None:
    setup = await setup_tenant(client, tenant, runtime.pool)
    batch = await launch(client, tenant, setup, phones(1), name="mine")
    other = await make_tenant()
    assert (await client.get(f"/v1/batches/{batch['id']}", headers=other.headers)).status_code == 404
    assert (await client.get(f"/v1/batches/{batch['id']}/entries", headers=other.headers)).status_code == 404
    assert (await client.post(f"/v1/batches/{batch['id']}/cancel", headers=other.headers)).status_code == 404
    assert (await client.get("/v1/batches", headers=other.headers)).json()["items"] == []
    mine = (await client.get("/v1/batches", params={"status": "running"}, headers=tenant.headers)).json()
    assert [b["name"] for b in mine["items"]] == ["mine"]


# --- calendar rules (pure) ---


def test_window_openings_follow_each_zone_and_daylight_saving() -> None:
    from voice_service.batches.policy import Window, window_state, zone

    window = Window.from_json({"start": "09:00", "end": "24:00", "days": ["sat", "sun"]})
    assert window is not None
    ny = zone("America/New_York")
    assert ny is not None
    # Friday 2025-03-07 20:00 in New York (01:00 UTC Saturday): opens Saturday 09:00 EST = 14:00 UTC.
    friday = datetime(2025, 3, 8, 1, 0, tzinfo=UTC)
    assert window.next_open(friday, ny) == datetime(2025, 3, 8, 14, 0, tzinfo=UTC)
    # Saturday 23:59 local is still open (end 24:00); Sunday 09:00 is EDT after the change: 13:00 UTC.
    assert window.is_open(datetime(2025, 3, 9, 4, 59, tzinfo=UTC).astimezone(ny))
    assert window.next_open(datetime(2025, 3, 9, 5, 0, tzinfo=UTC), ny) == datetime(
        2025, 3, 9, 13, 0, tzinfo=UTC
    )
    state = window_state(
        window, ["America/New_York", "Europe/Berlin"], datetime(2025, 3, 8, 12, 0, tzinfo=UTC)
    )
    assert state.open_zones == ["Europe/Berlin"]  # 13:00 in Berlin, 07:00 in New York
    assert state.next_open == datetime(2025, 3, 8, 14, 0, tzinfo=UTC)
